package jute

import "fmt"

// MultiHeader precedes each op of a multi request, each result of a multi
// response, and ends both lists with Done set.
type MultiHeader struct {
	Type Op
	Done bool
	Err  ErrCode
}

// multiHeaderSize is the encoded size of a MultiHeader.
const multiHeaderSize = 9

// multiEnd is the terminator ZooKeeper writes (MultiOperationRecord and
// MultiResponse.serialize).
var multiEnd = MultiHeader{Type: OpError, Done: true, Err: -1}

func (h *MultiHeader) Decode(d *Decoder) {
	h.Type = Op(d.Int32())
	h.Done = d.Bool()
	h.Err = ErrCode(d.Int32())
}

func (h *MultiHeader) Encode(e *Encoder) {
	e.Int32(int32(h.Type))
	e.Bool(h.Done)
	e.Int32(int32(h.Err))
}

// MultiOp is one operation of a multi or multiRead request.
type MultiOp struct {
	// Header.Type is the op. Java and kazoo write Done false and Err -1; the
	// server ignores Err. Decoding keeps the header as it arrived.
	Header MultiHeader
	// Request is the op's body: *CreateRequest (create, create2,
	// createContainer), *CreateTTLRequest, *DeleteRequest, *SetDataRequest,
	// *CheckVersionRequest, *GetDataRequest or *GetChildrenRequest.
	Request Record
}

// NewMultiOp returns a MultiOp with the header ZooKeeper's Java client
// writes: {op, false, -1}.
func NewMultiOp(op Op, req Record) MultiOp {
	return MultiOp{Header: MultiHeader{Type: op, Err: -1}, Request: req}
}

// MultiRequest is the body of multi and multiRead (MultiOperationRecord).
type MultiRequest struct {
	Ops []MultiOp
	// End is the terminating header as it arrived. The zero value (Done
	// unset) encodes as ZooKeeper's terminator {-1, true, -1}; the server
	// only looks at Done.
	End MultiHeader
}

// newMultiRequestOp returns the body record of a multi sub-op, following
// MultiOperationRecord.deserialize.
func newMultiRequestOp(op Op) Record {
	switch op {
	case OpCreate, OpCreate2, OpCreateContainer:
		return new(CreateRequest)
	case OpCreateTTL:
		return new(CreateTTLRequest)
	case OpDelete:
		return new(DeleteRequest)
	case OpSetData:
		return new(SetDataRequest)
	case OpCheck:
		return new(CheckVersionRequest)
	case OpGetChildren:
		return new(GetChildrenRequest)
	case OpGetData:
		return new(GetDataRequest)
	}
	return nil
}

func (r *MultiRequest) Decode(d *Decoder) {
	r.Ops = nil
	for d.Err() == nil {
		start := d.Offset()
		var h MultiHeader
		h.Decode(d)
		if d.Err() != nil {
			return
		}
		if h.Done {
			r.End = h
			if r.Ops == nil {
				r.Ops = []MultiOp{}
			}
			return
		}
		body := newMultiRequestOp(h.Type)
		if body == nil {
			d.failAt(start, fmt.Errorf("%w: %v", ErrInvalidMultiOp, h.Type))
			return
		}
		d.Nested(body)
		r.Ops = append(r.Ops, MultiOp{Header: h, Request: body})
	}
}

func (r *MultiRequest) Encode(e *Encoder) {
	for i := range r.Ops {
		r.Ops[i].Header.Encode(e)
		if r.Ops[i].Request != nil {
			r.Ops[i].Request.Encode(e)
		}
	}
	end := r.End
	if !end.Done {
		end = multiEnd
	}
	end.Encode(e)
}

// MultiResult is one result of a multi or multiRead response.
type MultiResult struct {
	// Header.Type is the result type (OpError for a failed op) and
	// Header.Err its error code, 0 on success.
	Header MultiHeader
	// Response is the result body: *CreateResponse (create),
	// *Create2Response (create2, createTTL and createContainer all report
	// type create2), *SetDataResponse, *GetDataResponse,
	// *GetChildrenResponse, *ErrorResponse (error), or nil (delete, check).
	Response Record
}

// MultiResponse is the body of a multi or multiRead reply. The reply header
// carries err 0 even when the multi failed; the per-op results carry the
// errors. In a failed write multi the ops before the failing one report 0,
// the failing one its code and later ones RUNTIMEINCONSISTENCY
// (DataTree.processTxn).
type MultiResponse struct {
	Results []MultiResult
	// End is the terminating header as it arrived; the zero value encodes as
	// {-1, true, -1}.
	End MultiHeader
}

// newMultiResult returns the body record of a multi result, following
// MultiResponse.deserialize; ok is false for an invalid type.
func newMultiResult(op Op) (r Record, ok bool) {
	switch op {
	case OpCreate:
		return new(CreateResponse), true
	case OpCreate2:
		return new(Create2Response), true
	case OpDelete, OpCheck:
		return nil, true
	case OpSetData:
		return new(SetDataResponse), true
	case OpGetChildren:
		return new(GetChildrenResponse), true
	case OpGetData:
		return new(GetDataResponse), true
	case OpError:
		return new(ErrorResponse), true
	}
	return nil, false
}

func (r *MultiResponse) Decode(d *Decoder) {
	r.Results = nil
	for d.Err() == nil {
		start := d.Offset()
		var h MultiHeader
		h.Decode(d)
		if d.Err() != nil {
			return
		}
		if h.Done {
			r.End = h
			if r.Results == nil {
				r.Results = []MultiResult{}
			}
			return
		}
		body, ok := newMultiResult(h.Type)
		if !ok {
			d.failAt(start, fmt.Errorf("%w: result type %v", ErrInvalidMultiOp, h.Type))
			return
		}
		if body != nil {
			d.Nested(body)
		}
		r.Results = append(r.Results, MultiResult{Header: h, Response: body})
	}
}

func (r *MultiResponse) Encode(e *Encoder) {
	for i := range r.Results {
		r.Results[i].Header.Encode(e)
		if r.Results[i].Response != nil {
			r.Results[i].Response.Encode(e)
		}
	}
	end := r.End
	if !end.Done {
		end = multiEnd
	}
	end.Encode(e)
}
