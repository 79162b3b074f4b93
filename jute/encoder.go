package jute

import "encoding/binary"

// Encoder appends jute primitives to a byte slice, the way
// org.apache.jute.BinaryOutputArchive writes them. Encoding cannot fail.
// The zero Encoder is ready to use.
type Encoder struct {
	buf []byte
}

// NewEncoder returns an Encoder appending to dst.
func NewEncoder(dst []byte) *Encoder { return &Encoder{buf: dst} }

// Bytes returns the bytes written so far, including the initial dst.
func (e *Encoder) Bytes() []byte { return e.buf }

// Byte writes one byte.
func (e *Encoder) Byte(v byte) { e.buf = append(e.buf, v) }

// Bool writes 1 for true and 0 for false.
func (e *Encoder) Bool(v bool) {
	if v {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}

// Int32 writes a jute int.
func (e *Encoder) Int32(v int32) { e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(v)) }

// Int64 writes a jute long.
func (e *Encoder) Int64(v int64) { e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(v)) }

// Buffer writes a jute buffer: length -1 for nil, else the length and bytes.
func (e *Encoder) Buffer(v []byte) {
	if v == nil {
		e.Int32(-1)
		return
	}
	e.Int32(int32(len(v)))
	e.buf = append(e.buf, v...)
}

// UString writes a non-null jute ustring.
func (e *Encoder) UString(v string) {
	e.Int32(int32(len(v)))
	e.buf = append(e.buf, v...)
}

// NullableUString writes a jute ustring, length -1 for nil.
func (e *Encoder) NullableUString(v *string) {
	if v == nil {
		e.Int32(-1)
		return
	}
	e.UString(*v)
}

// UStringVector writes a vector<ustring>: -1 for nil, else the count and
// elements.
func (e *Encoder) UStringVector(v []string) {
	if v == nil {
		e.Int32(-1)
		return
	}
	e.Int32(int32(len(v)))
	for _, s := range v {
		e.UString(s)
	}
}

// VectorLen writes a vector's element count, -1 when isNil.
func (e *Encoder) VectorLen(n int, isNil bool) {
	if isNil {
		e.Int32(-1)
		return
	}
	e.Int32(int32(n))
}

// Raw appends b as is.
func (e *Encoder) Raw(b []byte) { e.buf = append(e.buf, b...) }
