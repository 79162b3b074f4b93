// Package jute is zkproxy's codec for the ZooKeeper client wire protocol
// (ZooKeeper 3.4 through 3.9). It imports only the standard library.
//
// The protocol is a stream of frames: a 4-byte big-endian length followed by
// that many bytes of payload (see FrameReader). The payload is a sequence of
// jute records, serialized the way org.apache.jute.BinaryOutputArchive writes
// them: big-endian integers, one-byte booleans, and length-prefixed buffers,
// strings and vectors in which length -1 means null. The record definitions
// follow zookeeper-jute/src/main/resources/zookeeper.jute field by field.
//
// The API is shaped for a proxy's hot path:
//
//   - FrameReader reads a frame into a reusable buffer; Frame.Raw is forwarded
//     untouched.
//   - PeekRequestHeader and PeekReplyHeader read the 8- or 16-byte header
//     without decoding the body and without allocating.
//   - DecodeRequest and DecodeReply decode a body only when asked.
//   - AppendRequestFrame and AppendReplyFrame build the frames a proxy
//     originates itself.
//
// # Decoding guarantees
//
// Decoding never panics, never reads past the payload it was given and never
// allocates from a length read off the wire before checking that length
// against the bytes actually left. The first error sticks: after it every read
// returns a zero value, so records check once. A payload that ends in the
// middle of a field fails with an error wrapping io.ErrUnexpectedEOF. Errors
// are *DecodeError values carrying the op, xid and byte offset, wrapping one of
// the sentinel errors of this package.
//
// Whenever decoding succeeds, encoding the decoded value yields exactly the
// input bytes. To make that hold:
//
//   - nil and empty stay distinct for buffers ([]byte) and vectors (slices):
//     a nil slice is written as length -1, an empty non-nil slice as 0;
//   - a boolean byte other than 0 or 1 is rejected (ErrInvalidBool): Java's
//     DataInput.readBoolean would accept it, but no ZooKeeper client or server
//     writes one (BinaryOutputArchive.writeBool writes 0 or 1) and the value
//     could not be re-encoded identically;
//   - a null ustring (length -1) is rejected (ErrNullString) in fields that are
//     plain Go strings: paths, schemes, child names. No client sends a null
//     path on purpose and the server fails such a request (PathUtils.
//     validatePath: "Path cannot be null"). Fields where real clients do write
//     null are nullable: the three server lists of ReconfigRequest, which
//     the Java client and kazoo leave null when unused, are *string (nil is
//     null), and Id has NullID, because kazoo's write_string writes -1 for
//     every empty or None string and its CREATOR_ALL_ACL is ("auth", "");
//   - records that end in an optional field (the readOnly byte of the
//     connect records) remember whether it was present;
//   - the multi terminator header is kept as it arrived.
//
// Decoded records never alias the input: buffers are copied, so a Frame's
// buffer may be reused as soon as decoding returns.
package jute
