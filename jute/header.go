package jute

import (
	"encoding/binary"
	"io"
)

// RequestHeader starts every client frame after the ConnectRequest.
type RequestHeader struct {
	Xid Xid
	Op  Op
}

// RequestHeaderSize is the encoded size of a RequestHeader.
const RequestHeaderSize = 8

func (h *RequestHeader) Decode(d *Decoder) {
	h.Xid = Xid(d.Int32())
	h.Op = Op(d.Int32())
}

func (h *RequestHeader) Encode(e *Encoder) {
	e.Int32(int32(h.Xid))
	e.Int32(int32(h.Op))
}

// ReplyHeader starts every server frame after the ConnectResponse.
type ReplyHeader struct {
	Xid  Xid
	Zxid Zxid
	Err  ErrCode
}

// ReplyHeaderSize is the encoded size of a ReplyHeader.
const ReplyHeaderSize = 16

func (h *ReplyHeader) Decode(d *Decoder) {
	h.Xid = Xid(d.Int32())
	h.Zxid = Zxid(d.Int64())
	h.Err = ErrCode(d.Int32())
}

func (h *ReplyHeader) Encode(e *Encoder) {
	e.Int32(int32(h.Xid))
	e.Int64(int64(h.Zxid))
	e.Int32(int32(h.Err))
}

// PeekRequestHeader reads the header at the start of a request payload
// without decoding the body and without allocating.
func PeekRequestHeader(payload []byte) (RequestHeader, error) {
	if len(payload) < RequestHeaderSize {
		return RequestHeader{}, &DecodeError{Record: "RequestHeader", Offset: len(payload) &^ 3, Err: io.ErrUnexpectedEOF}
	}
	return RequestHeader{
		Xid: Xid(binary.BigEndian.Uint32(payload)),
		Op:  Op(binary.BigEndian.Uint32(payload[4:])),
	}, nil
}

// PeekReplyHeader reads the header at the start of a reply payload without
// decoding the body and without allocating.
func PeekReplyHeader(payload []byte) (ReplyHeader, error) {
	if len(payload) < ReplyHeaderSize {
		off := 0
		switch {
		case len(payload) >= 12:
			off = 12
		case len(payload) >= 4:
			off = 4
		}
		return ReplyHeader{}, &DecodeError{Record: "ReplyHeader", Offset: off, Err: io.ErrUnexpectedEOF}
	}
	return ReplyHeader{
		Xid:  Xid(binary.BigEndian.Uint32(payload)),
		Zxid: Zxid(binary.BigEndian.Uint64(payload[4:])),
		Err:  ErrCode(binary.BigEndian.Uint32(payload[12:])),
	}, nil
}
