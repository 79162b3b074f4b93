package jute

import (
	"encoding/binary"
	"io"
)

// Decoder reads jute primitives from one payload. It never reads past the
// payload, checks every length read off the wire against the bytes left
// before allocating, and keeps its first error: after an error every read
// returns a zero value, so a record's Decode method checks nothing and its
// caller checks Err once.
//
// The zero Decoder is an empty payload; Reset points a Decoder at another
// payload, so one can be reused. Not safe for concurrent use.
type Decoder struct {
	buf []byte
	off int
	err error
	// cur is the record being decoded; its name goes into errors. Keeping the
	// record rather than its name keeps the success path free of reflection.
	cur Record
}

// NewDecoder returns a Decoder reading b.
func NewDecoder(b []byte) *Decoder {
	return &Decoder{buf: b}
}

// Reset makes d read b from its start and clears any error.
func (d *Decoder) Reset(b []byte) {
	*d = Decoder{buf: b}
}

// Err returns the first error met, a *DecodeError, or nil.
func (d *Decoder) Err() error { return d.err }

// Offset returns the number of bytes consumed so far.
func (d *Decoder) Offset() int { return d.off }

// Remaining returns the number of bytes not yet consumed.
func (d *Decoder) Remaining() int { return len(d.buf) - d.off }

// Fail records err at the current offset unless an error is already
// recorded. Record decoders use it for semantic errors.
func (d *Decoder) Fail(err error) {
	d.failAt(d.off, err)
}

func (d *Decoder) failAt(off int, err error) {
	if d.err == nil {
		d.err = &DecodeError{Record: recordName(d.cur), Offset: off, Err: err}
	}
}

// take returns the next n bytes, or nil after recording
// io.ErrUnexpectedEOF when fewer are left.
func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.buf)-d.off {
		d.failAt(d.off, io.ErrUnexpectedEOF)
		return nil
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	b := d.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// Bool reads a jute boolean. Bytes other than 0 and 1 are rejected with
// ErrInvalidBool so that re-encoding stays byte-identical (see the package
// documentation).
func (d *Decoder) Bool() bool {
	start := d.off
	b := d.take(1)
	if b == nil {
		return false
	}
	switch b[0] {
	case 0:
		return false
	case 1:
		return true
	}
	d.failAt(start, ErrInvalidBool)
	return false
}

// Int32 reads a jute int.
func (d *Decoder) Int32() int32 {
	b := d.take(4)
	if b == nil {
		return 0
	}
	return int32(binary.BigEndian.Uint32(b))
}

// Int64 reads a jute long.
func (d *Decoder) Int64() int64 {
	b := d.take(8)
	if b == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// length reads a length prefix and checks it: -1 is returned as is (null);
// below -1 fails with ErrInvalidLength; otherwise n elements of at least
// minSize bytes each must fit in the bytes left, else io.ErrUnexpectedEOF.
func (d *Decoder) length(minSize int) int {
	start := d.off
	n := d.Int32()
	if d.err != nil {
		return 0
	}
	if n == -1 {
		return -1
	}
	if n < -1 {
		d.failAt(start, ErrInvalidLength)
		return 0
	}
	if int64(n)*int64(minSize) > int64(len(d.buf)-d.off) {
		d.failAt(start, io.ErrUnexpectedEOF)
		return 0
	}
	return int(n)
}

// Buffer reads a jute buffer: nil for length -1, a non-nil (possibly empty)
// copy otherwise. The result never aliases the payload.
func (d *Decoder) Buffer() []byte {
	n := d.length(1)
	if n < 0 || d.err != nil {
		return nil
	}
	out := make([]byte, n)
	copy(out, d.take(n))
	return out
}

// UString reads a jute ustring that must not be null; null fails with
// ErrNullString. The bytes are kept as they are, valid UTF-8 or not (Java
// writes CESU-8-style surrogates for supplementary characters).
func (d *Decoder) UString() string {
	start := d.off
	n := d.length(1)
	if d.err != nil {
		return ""
	}
	if n < 0 {
		d.failAt(start, ErrNullString)
		return ""
	}
	return string(d.take(n))
}

// NullableUString reads a jute ustring that may be null (nil).
func (d *Decoder) NullableUString() *string {
	n := d.length(1)
	if n < 0 || d.err != nil {
		return nil
	}
	s := string(d.take(n))
	return &s
}

// UStringVector reads a vector<ustring>: nil for a null vector, a non-nil
// (possibly empty) slice otherwise. Elements must not be null.
func (d *Decoder) UStringVector() []string {
	n := d.VectorLen(4)
	if n < 0 || d.err != nil {
		return nil
	}
	out := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, d.UString())
	}
	return out
}

// VectorLen reads a vector's element count: -1 for a null vector. The count
// is checked against the bytes left, assuming each element takes at least
// minElemSize bytes, so callers may allocate count elements.
func (d *Decoder) VectorLen(minElemSize int) int {
	if minElemSize < 1 {
		minElemSize = 1
	}
	return d.length(minElemSize)
}

// Rest consumes and returns a copy of every byte left (non-nil).
func (d *Decoder) Rest() []byte {
	n := d.Remaining()
	if d.err != nil {
		return nil
	}
	out := make([]byte, n)
	copy(out, d.take(n))
	return out
}

// DecodeWhole decodes r from the bytes left and fails with ErrTrailingBytes
// if any remain afterwards.
func (d *Decoder) DecodeWhole(r Record) {
	d.Nested(r)
	if d.err == nil && d.Remaining() != 0 {
		d.Fail(ErrTrailingBytes)
	}
}

// Nested decodes an embedded record (a Stat inside a response, an ACL inside
// a vector), naming it in errors.
func (d *Decoder) Nested(r Record) {
	prev := d.cur
	d.cur = r
	r.Decode(d)
	d.cur = prev
}
