package jute

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decoding errors are returned wrapped in a *DecodeError;
// test for them with errors.Is.
var (
	// ErrFrameTooLarge: a frame's length prefix exceeds the reader's limit.
	// ZooKeeper's server closes the connection in this case
	// (NIOServerCnxn.readLength: "Len error").
	ErrFrameTooLarge = errors.New("jute: frame too large")
	// ErrNegativeFrameLength: a frame's length prefix is negative.
	ErrNegativeFrameLength = errors.New("jute: negative frame length")
	// ErrInvalidLength: a buffer, string or vector length is below -1.
	ErrInvalidLength = errors.New("jute: invalid length")
	// ErrInvalidBool: a boolean byte is neither 0 nor 1.
	ErrInvalidBool = errors.New("jute: invalid boolean byte")
	// ErrNullString: a null ustring (length -1) in a field that cannot be null.
	ErrNullString = errors.New("jute: null string")
	// ErrTrailingBytes: bytes left over after a record was fully decoded.
	ErrTrailingBytes = errors.New("jute: trailing bytes after record")
	// ErrUnknownOp: an opcode this package does not know, or one that has no
	// body record in the requested direction.
	ErrUnknownOp = errors.New("jute: unknown opcode")
	// ErrInvalidMultiOp: a multi header names an op that cannot appear inside
	// multi or multiRead (MultiOperationRecord.deserialize,
	// MultiResponse.deserialize: "Invalid type of op").
	ErrInvalidMultiOp = errors.New("jute: invalid op inside multi")
)

// DecodeError describes where decoding failed. Err wraps a sentinel of this
// package or io.ErrUnexpectedEOF.
type DecodeError struct {
	// Record is the jute record being decoded, e.g. "GetDataResponse".
	Record string
	// HasHeader reports whether Op and Xid are known (false for the connect
	// records, which have no header).
	HasHeader bool
	Op        Op
	Xid       Xid
	// Offset is the byte offset into the payload (after the 4-byte frame
	// length) at which the failing field starts.
	Offset int
	Err    error
}

func (e *DecodeError) Error() string {
	if e.HasHeader {
		return fmt.Sprintf("jute: decoding %s (op %v, xid %d) at offset %d: %v", e.Record, e.Op, e.Xid, e.Offset, e.Err)
	}
	return fmt.Sprintf("jute: decoding %s at offset %d: %v", e.Record, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }
