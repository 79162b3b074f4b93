package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// The handoff protocol (docs/upgrade.md) runs over a Unix stream socket
// between a running zkproxy (the old process) and the one replacing it (the
// new process). Every message is a frame: a 4-byte big-endian length, then
// a 1-byte type and the body. A session message carries the client
// connection's descriptor as SCM_RIGHTS with its bytes.
//
//	new → old  Hello   magic, the new binary's version, the handoff versions it accepts
//	old → new  Begin   magic, the handoff version the old process speaks
//	old → new  Session one session's state (+ the client descriptor)
//	new → old  Ack     session id, taken or not, why not
//	old → new  Done    no session left
//
// The old process speaks exactly one version; a new binary that does not
// accept it is refused before anything leaves the old process.

// handoffVersion is the version of the session record this binary speaks
// and accepts. A string so tests can build a binary speaking another one
// (-ldflags -X github.com/zkproxy/zkproxy/proxy.handoffVersion=99).
var handoffVersion = "1"

// HandoffVersion returns the handoff format version this binary speaks.
func HandoffVersion() uint16 {
	v, err := strconv.ParseUint(handoffVersion, 10, 16)
	if err != nil {
		return 0 // never accepted by anyone: a bad build refuses every handoff
	}
	return uint16(v)
}

// handoffMagic opens Hello and Begin: a peer that is not a zkproxy handoff
// endpoint is recognised at once.
const handoffMagic = "ZKPXHAND"

// Message types.
const (
	msgHello   byte = 'H'
	msgBegin   byte = 'B'
	msgSession byte = 'S'
	msgAck     byte = 'A'
	msgDone    byte = 'D'
)

// Bounds applied when decoding; input beyond them is an error.
const (
	// maxHandoffMessage bounds one message: the session record with the
	// most state is its held requests (bounded by
	// max-buffered-bytes-per-session) plus its watch paths.
	maxHandoffMessage = 256 << 20
	maxHandoffString  = 16 << 20 // one path, version string, auth frame
	maxHandoffList    = 1 << 22  // entries of one list
)

// errHandoffDecode is wrapped by every decoding error.
var errHandoffDecode = errors.New("proxy: handoff: malformed message")

// handoffHello is the new process's first message.
type handoffHello struct {
	Version  string   // the new binary's version (main.version)
	Accepts  []uint16 // handoff versions it can adopt
	PID      int64
	Listener string // what it listens on, for the log
}

// handoffBegin answers an acceptable Hello.
type handoffBegin struct {
	Version uint16
}

// handoffAck answers one session record.
type handoffAck struct {
	SessionID int64
	OK        bool
	Reason    string // why not, when !OK
}

// handoffSession is one session's tracked state: what the move's re-attach
// needs (id, password, requested timeout, lastZxidSeen, readOnly byte, auth
// log, watches) plus what the client believes (negotiated timeout, its
// deadline), the requests it sent that were not forwarded yet, in order,
// and the bytes of a frame it had begun to send.
type handoffSession struct {
	ID            int64
	Passwd        []byte
	ReqTimeout    int32 // the client's requested timeout (ms)
	ClientTimeout int64 // negotiated with the client (ms)
	HasReadOnly   bool
	ReadOnly      bool
	LastZxid      int64
	// LastClientFrame (Unix ns) is when the client's last frame arrived:
	// the client's deadline runs from it (docs/session-expiry.md).
	LastClientFrame int64
	// ExpireBy (Unix ns) is when the member expires the session: the last
	// frame it sent on the old connection plus its negotiated timeout.
	ExpireBy int64
	Created  int64 // Unix ns
	Attaches uint64
	AuthLog  [][]byte // AuthPacket frames, replayed in order
	// Watches by kind: data, exist, child, persistent, persistent-recursive.
	Watches [5][]string
	// Held are the client's request frames not yet forwarded, in order, as
	// the client sent them.
	Held [][]byte
	// Partial is the start of a frame the client had not finished sending.
	Partial []byte
	// Recved and Sent are the frames received and sent (cons).
	Recved, Sent uint64
	// Ensemble is the ensemble the session is on (its failovers stay in
	// it): the new process re-attaches it there.
	Ensemble []string
}

// handoffEncoder appends fields to a message body.
type handoffEncoder struct{ b []byte }

func (e *handoffEncoder) u8(v byte)    { e.b = append(e.b, v) }
func (e *handoffEncoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *handoffEncoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *handoffEncoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *handoffEncoder) i64(v int64)  { e.u64(uint64(v)) }
func (e *handoffEncoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}
func (e *handoffEncoder) bytes(v []byte) { e.u32(uint32(len(v))); e.b = append(e.b, v...) }
func (e *handoffEncoder) str(v string)   { e.u32(uint32(len(v))); e.b = append(e.b, v...) }
func (e *handoffEncoder) strs(v []string) {
	e.u32(uint32(len(v)))
	for _, s := range v {
		e.str(s)
	}
}
func (e *handoffEncoder) frames(v [][]byte) {
	e.u32(uint32(len(v)))
	for _, f := range v {
		e.bytes(f)
	}
}

// handoffDecoder reads fields off a message body. It never reads past the
// body, checks every length against what is left before allocating, and
// keeps its first error: after it every read returns a zero value.
type handoffDecoder struct {
	b   []byte
	err error
}

func (d *handoffDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errHandoffDecode, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *handoffDecoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("%s: %d bytes needed, %d left", what, n, len(d.b))
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *handoffDecoder) u8(what string) byte {
	if b := d.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (d *handoffDecoder) u16(what string) uint16 {
	if b := d.take(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *handoffDecoder) u32(what string) uint32 {
	if b := d.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *handoffDecoder) u64(what string) uint64 {
	if b := d.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *handoffDecoder) i64(what string) int64 { return int64(d.u64(what)) }

func (d *handoffDecoder) boolean(what string) bool {
	switch v := d.u8(what); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("%s: boolean %d", what, v)
		return false
	}
}

// length reads a length and checks it against limit and, counting each
// element as at least minSize bytes, against what is left.
func (d *handoffDecoder) length(what string, limit, minSize int) int {
	n := d.u32(what)
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) || uint64(n)*uint64(minSize) > uint64(len(d.b)) {
		d.fail("%s: length %d over the limit or the bytes left (%d)", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *handoffDecoder) bytes(what string) []byte {
	n := d.length(what, maxHandoffString, 1)
	if d.err != nil {
		return nil
	}
	return append([]byte(nil), d.take(n, what)...)
}

func (d *handoffDecoder) str(what string) string {
	n := d.length(what, maxHandoffString, 1)
	return string(d.take(n, what))
}

func (d *handoffDecoder) strs(what string) []string {
	n := d.length(what, maxHandoffList, 4)
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.str(what))
	}
	if d.err != nil {
		return nil
	}
	return out
}

func (d *handoffDecoder) frames(what string) [][]byte {
	n := d.length(what, maxHandoffList, 4)
	if n == 0 {
		return nil
	}
	out := make([][]byte, 0, n)
	for range n {
		out = append(out, d.bytes(what))
	}
	if d.err != nil {
		return nil
	}
	return out
}

// end fails unless the whole body was read.
func (d *handoffDecoder) end(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%s: %d trailing bytes", what, len(d.b))
	}
	return d.err
}

func (h *handoffHello) encode() []byte {
	e := handoffEncoder{}
	e.b = append(e.b, handoffMagic...)
	e.str(h.Version)
	e.u32(uint32(len(h.Accepts)))
	for _, v := range h.Accepts {
		e.u16(v)
	}
	e.i64(h.PID)
	e.str(h.Listener)
	return e.b
}

func decodeHello(body []byte) (handoffHello, error) {
	var h handoffHello
	d := handoffDecoder{b: body}
	if string(d.take(len(handoffMagic), "magic")) != handoffMagic {
		d.fail("not a zkproxy handoff hello")
	}
	h.Version = d.str("version")
	n := d.length("accepted versions", 1024, 2)
	for range n {
		h.Accepts = append(h.Accepts, d.u16("accepted version"))
	}
	h.PID = d.i64("pid")
	h.Listener = d.str("listener")
	return h, d.end("hello")
}

func (b *handoffBegin) encode() []byte {
	e := handoffEncoder{}
	e.b = append(e.b, handoffMagic...)
	e.u16(b.Version)
	return e.b
}

func decodeBegin(body []byte) (handoffBegin, error) {
	var b handoffBegin
	d := handoffDecoder{b: body}
	if string(d.take(len(handoffMagic), "magic")) != handoffMagic {
		d.fail("not a zkproxy handoff begin")
	}
	b.Version = d.u16("version")
	return b, d.end("begin")
}

func (a *handoffAck) encode() []byte {
	e := handoffEncoder{}
	e.i64(a.SessionID)
	e.boolean(a.OK)
	e.str(a.Reason)
	return e.b
}

func decodeAck(body []byte) (handoffAck, error) {
	var a handoffAck
	d := handoffDecoder{b: body}
	a.SessionID = d.i64("session id")
	a.OK = d.boolean("ok")
	a.Reason = d.str("reason")
	return a, d.end("ack")
}

func (r *handoffSession) encode() []byte {
	e := handoffEncoder{}
	e.i64(r.ID)
	e.bytes(r.Passwd)
	e.u32(uint32(r.ReqTimeout))
	e.i64(r.ClientTimeout)
	e.boolean(r.HasReadOnly)
	e.boolean(r.ReadOnly)
	e.i64(r.LastZxid)
	e.i64(r.LastClientFrame)
	e.i64(r.ExpireBy)
	e.i64(r.Created)
	e.u64(r.Attaches)
	e.frames(r.AuthLog)
	for _, w := range r.Watches {
		e.strs(w)
	}
	e.frames(r.Held)
	e.bytes(r.Partial)
	e.u64(r.Recved)
	e.u64(r.Sent)
	e.strs(r.Ensemble)
	return e.b
}

func decodeSession(body []byte) (handoffSession, error) {
	var r handoffSession
	d := handoffDecoder{b: body}
	r.ID = d.i64("session id")
	r.Passwd = d.bytes("password")
	r.ReqTimeout = int32(d.u32("requested timeout"))
	r.ClientTimeout = d.i64("negotiated timeout")
	r.HasReadOnly = d.boolean("has readOnly")
	r.ReadOnly = d.boolean("readOnly")
	r.LastZxid = d.i64("last zxid")
	r.LastClientFrame = d.i64("last client frame")
	r.ExpireBy = d.i64("expire by")
	r.Created = d.i64("created")
	r.Attaches = d.u64("attaches")
	r.AuthLog = d.frames("auth log")
	for i := range r.Watches {
		r.Watches[i] = d.strs("watches")
	}
	r.Held = d.frames("held requests")
	r.Partial = d.bytes("partial frame")
	r.Recved = d.u64("frames received")
	r.Sent = d.u64("frames sent")
	r.Ensemble = d.strs("ensemble")
	if err := d.end("session"); err != nil {
		return handoffSession{}, err
	}
	switch {
	case r.ID == 0:
		return r, fmt.Errorf("%w: session id 0", errHandoffDecode)
	case r.ClientTimeout <= 0 || r.ClientTimeout > math.MaxInt32:
		return r, fmt.Errorf("%w: negotiated timeout %d ms", errHandoffDecode, r.ClientTimeout)
	case r.ReqTimeout <= 0:
		return r, fmt.Errorf("%w: requested timeout %d ms", errHandoffDecode, r.ReqTimeout)
	}
	for _, f := range r.Held {
		if len(f) < 4 || int(binary.BigEndian.Uint32(f)) != len(f)-4 {
			return r, fmt.Errorf("%w: held request is not one frame", errHandoffDecode)
		}
	}
	return r, nil
}

// appendHandoffFrame appends one message frame of type typ.
func appendHandoffFrame(dst []byte, typ byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(body)))
	dst = append(dst, typ)
	return append(dst, body...)
}
