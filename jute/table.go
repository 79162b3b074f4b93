package jute

import (
	"fmt"
)

// opRecords maps each client request opcode to constructors of its request
// and reply bodies; a nil constructor means the frame has no body. This is
// the one table of the package; TestOpTableComplete checks it against every
// client opcode. Sources: ZooKeeper.java (what the client sends),
// FinalRequestProcessor.processRequest (what the server answers).
var opRecords = map[Op]struct {
	request, response func() Record
}{
	OpCreate:          {func() Record { return new(CreateRequest) }, func() Record { return new(CreateResponse) }},
	OpDelete:          {func() Record { return new(DeleteRequest) }, nil},
	OpExists:          {func() Record { return new(ExistsRequest) }, func() Record { return new(ExistsResponse) }},
	OpGetData:         {func() Record { return new(GetDataRequest) }, func() Record { return new(GetDataResponse) }},
	OpSetData:         {func() Record { return new(SetDataRequest) }, func() Record { return new(SetDataResponse) }},
	OpGetACL:          {func() Record { return new(GetACLRequest) }, func() Record { return new(GetACLResponse) }},
	OpSetACL:          {func() Record { return new(SetACLRequest) }, func() Record { return new(SetACLResponse) }},
	OpGetChildren:     {func() Record { return new(GetChildrenRequest) }, func() Record { return new(GetChildrenResponse) }},
	OpSync:            {func() Record { return new(SyncRequest) }, func() Record { return new(SyncResponse) }},
	OpPing:            {nil, nil},
	OpGetChildren2:    {func() Record { return new(GetChildren2Request) }, func() Record { return new(GetChildren2Response) }},
	OpCheck:           {func() Record { return new(CheckVersionRequest) }, func() Record { return new(SetDataResponse) }},
	OpMulti:           {func() Record { return new(MultiRequest) }, func() Record { return new(MultiResponse) }},
	OpCreate2:         {func() Record { return new(CreateRequest) }, func() Record { return new(Create2Response) }},
	OpReconfig:        {func() Record { return new(ReconfigRequest) }, func() Record { return new(GetDataResponse) }},
	OpCheckWatches:    {func() Record { return new(CheckWatchesRequest) }, nil},
	OpRemoveWatches:   {func() Record { return new(RemoveWatchesRequest) }, nil},
	OpCreateContainer: {func() Record { return new(CreateRequest) }, func() Record { return new(Create2Response) }},
	// deleteContainer is server-internal: ContainerManager submits the raw
	// UTF-8 path, not a jute record, so a body is kept as bytes.
	OpDeleteContainer:      {func() Record { return new(RawRecord) }, nil},
	OpCreateTTL:            {func() Record { return new(CreateTTLRequest) }, func() Record { return new(Create2Response) }},
	OpMultiRead:            {func() Record { return new(MultiRequest) }, func() Record { return new(MultiResponse) }},
	OpAuth:                 {func() Record { return new(AuthPacket) }, nil},
	OpSetWatches:           {func() Record { return new(SetWatches) }, nil},
	OpSASL:                 {func() Record { return new(GetSASLRequest) }, func() Record { return new(SetSASLResponse) }},
	OpGetEphemerals:        {func() Record { return new(GetEphemeralsRequest) }, func() Record { return new(GetEphemeralsResponse) }},
	OpGetAllChildrenNumber: {func() Record { return new(GetAllChildrenNumberRequest) }, func() Record { return new(GetAllChildrenNumberResponse) }},
	OpSetWatches2:          {func() Record { return new(SetWatches2) }, nil},
	OpAddWatch:             {func() Record { return new(AddWatchRequest) }, func() Record { return new(ErrorResponse) }},
	OpWhoAmI:               {nil, func() Record { return new(WhoAmIResponse) }},
	OpCloseSession:         {nil, nil},
}

// NewRequestRecord returns a new, empty request body for op. ok is false if
// op is not a client request opcode; the Record is nil if the request has no
// body (ping, whoAmI, closeSession).
func NewRequestRecord(op Op) (Record, bool) {
	e, ok := opRecords[op]
	if !ok || e.request == nil {
		return nil, ok
	}
	return e.request(), true
}

// NewResponseRecord returns a new, empty body for a successful (err 0) reply
// to a request of op. ok is false if op is not a client request opcode; the
// Record is nil if the reply has no body.
func NewResponseRecord(op Op) (Record, bool) {
	e, ok := opRecords[op]
	if !ok || e.response == nil {
		return nil, ok
	}
	return e.response(), true
}

// DecodeRequest decodes a request payload (a frame after the
// ConnectRequest): the header and, if the op has one, the body. The Record
// is nil for body-less ops. Unknown opcodes fail with ErrUnknownOp; the
// server answers those with UNIMPLEMENTED and closes the connection
// (UnimplementedRequestProcessor).
func DecodeRequest(payload []byte) (RequestHeader, Record, error) {
	h, err := PeekRequestHeader(payload)
	if err != nil {
		return h, nil, err
	}
	var d Decoder
	d.Reset(payload)
	d.off = RequestHeaderSize
	body, ok := NewRequestRecord(h.Op)
	switch {
	case !ok:
		d.Fail(fmt.Errorf("%w: %v", ErrUnknownOp, h.Op))
	case body == nil:
		if d.Remaining() != 0 {
			d.Fail(ErrTrailingBytes)
		}
	default:
		d.DecodeWhole(body)
	}
	if err := d.Err(); err != nil {
		return h, nil, withHeader(err, h.Op, h.Xid, body)
	}
	return h, body, nil
}

// DecodeReply decodes a reply payload (a frame after the ConnectResponse).
// op is the opcode of the request the reply answers; the caller matches it by
// xid. Notifications (xid -1) are recognised by their xid and decode as
// *WatcherEvent whatever op is. Only the frame length says whether a body
// follows: a reply with no bytes after the header has a nil Record. A reply
// whose header carries a non-zero err and that nonetheless has a body (see
// RawRecord) returns the body as *RawRecord.
func DecodeReply(op Op, payload []byte) (ReplyHeader, Record, error) {
	h, err := PeekReplyHeader(payload)
	if err != nil {
		return h, nil, err
	}
	var d Decoder
	d.Reset(payload)
	d.off = ReplyHeaderSize
	if h.Xid == XidNotification {
		op = OpNotification
	}
	var body Record
	switch {
	case op == OpNotification:
		body = new(WatcherEvent)
		d.DecodeWhole(body)
	case d.Remaining() == 0:
		if _, ok := opRecords[op]; !ok {
			d.Fail(fmt.Errorf("%w: %v", ErrUnknownOp, op))
		}
	case h.Err != ErrOK:
		body = new(RawRecord)
		d.DecodeWhole(body)
	default:
		var ok bool
		body, ok = NewResponseRecord(op)
		switch {
		case !ok:
			d.Fail(fmt.Errorf("%w: %v", ErrUnknownOp, op))
		case body == nil:
			d.Fail(ErrTrailingBytes)
		default:
			d.DecodeWhole(body)
		}
	}
	if err := d.Err(); err != nil {
		return h, nil, withHeader(err, op, h.Xid, body)
	}
	return h, body, nil
}

// withHeader adds op and xid to a decoder error.
func withHeader(err error, op Op, xid Xid, body Record) error {
	if de, ok := err.(*DecodeError); ok {
		de.HasHeader, de.Op, de.Xid = true, op, xid
		if de.Record == "payload" && body != nil {
			de.Record = recordName(body)
		}
	}
	return err
}

// AppendRequestFrame appends a complete request frame — length prefix,
// header, body — to dst. body may be nil for body-less ops.
func AppendRequestFrame(dst []byte, h RequestHeader, body Record) []byte {
	dst, at := beginFrame(dst)
	e := Encoder{buf: dst}
	h.Encode(&e)
	if body != nil {
		body.Encode(&e)
	}
	return endFrame(e.buf, at)
}

// AppendReplyFrame appends a complete reply frame — length prefix, header,
// body — to dst. body may be nil.
func AppendReplyFrame(dst []byte, h ReplyHeader, body Record) []byte {
	dst, at := beginFrame(dst)
	e := Encoder{buf: dst}
	h.Encode(&e)
	if body != nil {
		body.Encode(&e)
	}
	return endFrame(e.buf, at)
}

// AppendRecordFrame appends a frame whose payload is the single record r:
// the ConnectRequest and ConnectResponse, which have no header.
func AppendRecordFrame(dst []byte, r Record) []byte {
	dst, at := beginFrame(dst)
	return endFrame(AppendRecord(dst, r), at)
}
