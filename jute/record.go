package jute

import "reflect"

// Record is a jute record. Decode reads the record's fields in
// zookeeper.jute order and leaves any error in d (check d.Err once after);
// Encode appends them. For every record, Encode after a successful Decode
// reproduces the decoded bytes exactly.
type Record interface {
	Decode(d *Decoder)
	Encode(e *Encoder)
}

// recordName is the record's type name without package, for errors. It
// reads the name off the type and allocates nothing: a stream of short
// frames fails a decode per frame, and formatting the name with fmt (%T)
// made each failure cost several allocations and a trip through fmt's
// printer pool.
func recordName(r Record) string {
	if r == nil {
		return "payload"
	}
	t := reflect.TypeOf(r)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// Unmarshal decodes r from b, which must hold exactly one record; leftover
// bytes fail with ErrTrailingBytes.
func Unmarshal(b []byte, r Record) error {
	var d Decoder
	d.Reset(b)
	d.DecodeWhole(r)
	return d.Err()
}

// Marshal returns the encoding of r.
func Marshal(r Record) []byte {
	return AppendRecord(nil, r)
}

// AppendRecord appends the encoding of r to dst.
func AppendRecord(dst []byte, r Record) []byte {
	e := Encoder{buf: dst}
	r.Encode(&e)
	return e.buf
}

// RawRecord holds bytes that are kept rather than decoded: the body of a
// reply whose header carries a non-zero err. The Java client never reads
// such a body (ClientCnxn.SendThread.readResponse deserializes the response
// only when err is 0), and FinalRequestProcessor may write one that is not a
// valid record, e.g. CreateResponse with a null path after a failed create.
type RawRecord struct {
	Bytes []byte
}

func (r *RawRecord) Decode(d *Decoder) { r.Bytes = d.Rest() }
func (r *RawRecord) Encode(e *Encoder) { e.Raw(r.Bytes) }
