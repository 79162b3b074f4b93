package proxy

import (
	"encoding/binary"
	"fmt"

	"github.com/zkproxy/zkproxy/jute"
)

// pathRequest decodes the request bodies whose first field is a path and
// second an int-sized or boolean argument, which is all tracking needs:
// ExistsRequest, GetDataRequest, GetChildren(2)Request {path, bool watch},
// AddWatchRequest {path, int mode}, RemoveWatchesRequest {path, int type}
// (zookeeper.jute).
type pathRequest struct {
	Path  string
	Watch bool  // boolean second field
	Arg   int32 // int second field
	isInt bool
}

func (r *pathRequest) Decode(d *jute.Decoder) {
	r.Path = d.UString()
	if r.isInt {
		r.Arg = d.Int32()
	} else {
		r.Watch = d.Bool()
	}
}

func (r *pathRequest) Encode(e *jute.Encoder) {
	e.UString(r.Path)
	if r.isInt {
		e.Int32(r.Arg)
	} else {
		e.Bool(r.Watch)
	}
}

// parseRequest fills req with what tracking needs from one client request
// payload (header included). Only the ops whose reply changes the watch
// set are decoded; everything else is forwarded on its header alone. The
// path of a read without a watch is not needed (its reply arms nothing),
// so it is not copied out of the frame.
func parseRequest(payload []byte, req *pendingRequest) (*jute.SetWatches2, error) {
	body := payload[jute.RequestHeaderSize:]
	switch req.op {
	case jute.OpExists, jute.OpGetData, jute.OpGetChildren, jute.OpGetChildren2,
		jute.OpAddWatch, jute.OpRemoveWatches:
		isInt := req.op == jute.OpAddWatch || req.op == jute.OpRemoveWatches
		path, watch, arg, err := peekPathRequest(body, isInt)
		if err != nil {
			return nil, fmt.Errorf("decoding %s request xid %d: %w", req.op, req.xid, err)
		}
		req.watch, req.arg = watch, arg
		if watch || isInt {
			req.path = string(path)
		}
	case jute.OpSetWatches:
		var sw jute.SetWatches
		if err := jute.Unmarshal(body, &sw); err != nil {
			return nil, fmt.Errorf("decoding setWatches xid %d: %w", req.xid, err)
		}
		return &jute.SetWatches2{RelativeZxid: sw.RelativeZxid, DataWatches: sw.DataWatches,
			ExistWatches: sw.ExistWatches, ChildWatches: sw.ChildWatches}, nil
	case jute.OpSetWatches2:
		var sw jute.SetWatches2
		if err := jute.Unmarshal(body, &sw); err != nil {
			return nil, fmt.Errorf("decoding setWatches2 xid %d: %w", req.xid, err)
		}
		return &sw, nil
	}
	return nil, nil
}

// peekPathRequest reads a pathRequest without allocating: the path bytes
// (aliasing body) and the second field. It fails as pathRequest.Decode
// does on a null or overlong path, a short body, a bad boolean or
// trailing bytes (jute.Unmarshal decodes whole records).
func peekPathRequest(body []byte, isInt bool) (path []byte, watch bool, arg int32, err error) {
	if len(body) < 4 {
		return nil, false, 0, fmt.Errorf("path length: %w", jute.ErrInvalidLength)
	}
	n := int32(binary.BigEndian.Uint32(body))
	switch {
	case n < 0:
		return nil, false, 0, jute.ErrNullString
	case int64(n) > int64(len(body)-4):
		return nil, false, 0, fmt.Errorf("path of %d bytes: %w", n, jute.ErrInvalidLength)
	}
	path, rest := body[4:4+n], body[4+n:]
	if isInt {
		if len(rest) < 4 {
			return nil, false, 0, fmt.Errorf("int argument: %w", jute.ErrInvalidLength)
		}
		if len(rest) > 4 {
			return nil, false, 0, jute.ErrTrailingBytes
		}
		return path, false, int32(binary.BigEndian.Uint32(rest)), nil
	}
	if len(rest) < 1 {
		return nil, false, 0, fmt.Errorf("watch flag: %w", jute.ErrInvalidLength)
	}
	if len(rest) > 1 {
		return nil, false, 0, jute.ErrTrailingBytes
	}
	switch rest[0] {
	case 0:
		return path, false, 0, nil
	case 1:
		return path, true, 0, nil
	}
	return nil, false, 0, jute.ErrInvalidBool
}

// appendRequestFrame appends a complete frame (length, header, body) the
// proxy sends on its own behalf; body may be nil.
func appendRequestFrame(dst []byte, h jute.RequestHeader, body jute.Record) []byte {
	payload := jute.AppendRecord(nil, &h)
	if body != nil {
		payload = jute.AppendRecord(payload, body)
	}
	return jute.AppendFrame(dst, payload)
}

// appendReplyFrame appends a complete reply frame with no body.
func appendReplyFrame(dst []byte, h jute.ReplyHeader) []byte {
	return jute.AppendFrame(dst, jute.AppendRecord(nil, &h))
}

// pingFrame is the request a client sends as ping; the proxy sends the
// same bytes for its own keep-alives.
var pingFrame = appendRequestFrame(nil, jute.RequestHeader{Xid: jute.XidPing, Op: jute.OpPing}, nil)

// authReplayFrame returns an auth request frame as the proxy replays it:
// the client's AuthPacket body under the header {xid -4, op auth}, whatever
// xid the client used, so the replay's reply is recognisable.
func authReplayFrame(raw []byte) []byte {
	payload := raw[4:]
	h := jute.RequestHeader{Xid: jute.XidAuth, Op: jute.OpAuth}
	out := jute.AppendRecord(nil, &h)
	out = append(out, payload[jute.RequestHeaderSize:]...)
	return jute.AppendFrame(nil, out)
}
