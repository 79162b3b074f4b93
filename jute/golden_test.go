package jute

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Golden frames are real traffic between ZooKeeper 3.8 and its Java client
// and kazoo, captured through internal/testkit/zktest/relay by TestCaptureGolden
// (see testdata/golden/README.md). Each *.frames file has one frame per
// line:
//
//	<dir> <kind> <hex of the whole frame, length prefix included>
//
// dir is ">" for client to server and "<" for server to client; kind is
// "connect" for the handshake records, otherwise the opcode name of the
// request (for a reply: of the request it answers; "notification" for xid
// -1). Lines starting with # are comments: each frame is preceded by one that
// shows its decoded form.

type goldenDir int

const (
	dirRequest goldenDir = iota
	dirReply
)

const goldenConnect = "connect"

type goldenFrame struct {
	File  string
	Line  int
	Dir   goldenDir
	Kind  string // goldenConnect or Op.String()
	Op    Op     // for kind != goldenConnect
	Frame []byte
}

func (g goldenFrame) String() string {
	d := ">"
	if g.Dir == dirReply {
		d = "<"
	}
	return fmt.Sprintf("%s:%d %s %s", filepath.Base(g.File), g.Line, d, g.Kind)
}

func opByName(name string) (Op, bool) {
	for op, n := range opNames {
		if n == name {
			return op, true
		}
	}
	return 0, false
}

func loadGoldenFrames(t testing.TB) []goldenFrame {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.frames"))
	if err != nil {
		t.Fatal(err)
	}
	var out []goldenFrame
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
		line := 0
		for sc.Scan() {
			line++
			text := strings.TrimSpace(sc.Text())
			if text == "" || strings.HasPrefix(text, "#") {
				continue
			}
			fields := strings.Fields(text)
			if len(fields) != 3 || (fields[0] != ">" && fields[0] != "<") {
				t.Fatalf("%s:%d: malformed line", file, line)
			}
			g := goldenFrame{File: file, Line: line, Kind: fields[1]}
			if fields[0] == "<" {
				g.Dir = dirReply
			}
			if g.Kind != goldenConnect {
				op, ok := opByName(g.Kind)
				if !ok {
					t.Fatalf("%s:%d: unknown kind %q", file, line, g.Kind)
				}
				g.Op = op
			}
			if g.Frame, err = hex.DecodeString(fields[2]); err != nil {
				t.Fatalf("%s:%d: %v", file, line, err)
			}
			out = append(out, g)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	return out
}

// checkGoldenFrame decodes one golden frame and re-encodes it, returning a
// one-line description of the decoded frame.
func checkGoldenFrame(g goldenFrame) (string, error) {
	if len(g.Frame) < 4 || int(binary.BigEndian.Uint32(g.Frame)) != len(g.Frame)-4 {
		return "", fmt.Errorf("length prefix does not match the frame")
	}
	payload := g.Frame[4:]
	var again []byte
	var desc string
	switch {
	case g.Kind == goldenConnect:
		var r Record = new(ConnectRequest)
		if g.Dir == dirReply {
			r = new(ConnectResponse)
		}
		if err := Unmarshal(payload, r); err != nil {
			return "", err
		}
		again = AppendRecordFrame(nil, r)
		desc = fmt.Sprintf("%s %+v", recordName(r), r)
	case g.Dir == dirRequest:
		h, body, err := DecodeRequest(payload)
		if err != nil {
			return "", err
		}
		if h.Op != g.Op {
			return "", fmt.Errorf("decoded op %v, file says %v", h.Op, g.Op)
		}
		again = AppendRequestFrame(nil, h, body)
		desc = fmt.Sprintf("xid=%d %v %s", h.Xid, h.Op, describe(body))
	default:
		h, body, err := DecodeReply(g.Op, payload)
		if err != nil {
			return "", err
		}
		if (h.Xid == XidNotification) != (g.Op == OpNotification) {
			return "", fmt.Errorf("xid %d with kind %v", h.Xid, g.Op)
		}
		again = AppendReplyFrame(nil, h, body)
		desc = fmt.Sprintf("xid=%d zxid=%v err=%v %s", h.Xid, h.Zxid, h.Err, describe(body))
	}
	if !bytes.Equal(again, g.Frame) {
		return "", fmt.Errorf("re-encoded as\n%x, want\n%x", again, g.Frame)
	}
	return desc, nil
}

// describe renders a record for golden comments, following pointers so
// multi bodies and nullable strings show their contents.
func describe(r Record) string {
	if r == nil {
		return "(no body)"
	}
	var b strings.Builder
	describeValue(&b, reflect.ValueOf(r))
	return b.String()
}

func describeValue(b *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		describeValue(b, v.Elem())
	case reflect.Struct:
		b.WriteString(strings.TrimPrefix(v.Type().String(), "jute.") + "{")
		for i := range v.NumField() {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(v.Type().Field(i).Name + ":")
			describeValue(b, v.Field(i))
		}
		b.WriteString("}")
	case reflect.Slice:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			fmt.Fprintf(b, "%q", v.Bytes())
			return
		}
		b.WriteString("[")
		for i := range v.Len() {
			if i > 0 {
				b.WriteString(" ")
			}
			describeValue(b, v.Index(i))
		}
		b.WriteString("]")
	case reflect.String:
		fmt.Fprintf(b, "%q", v.String())
	default:
		if s, ok := v.Interface().(fmt.Stringer); ok {
			b.WriteString(s.String())
			return
		}
		fmt.Fprint(b, v.Interface())
	}
}

// TestGoldenFrames decodes and re-encodes every checked-in golden frame. It
// needs no ZooKeeper and runs under -short.
func TestGoldenFrames(t *testing.T) {
	frames := loadGoldenFrames(t)
	if len(frames) == 0 {
		t.Fatal("no golden frames in testdata/golden (regenerate with -update, see README.md)")
	}
	seen := map[string]map[goldenDir]bool{}
	for _, g := range frames {
		if _, err := checkGoldenFrame(g); err != nil {
			t.Errorf("%v: %v", g, err)
		}
		if seen[g.Kind] == nil {
			seen[g.Kind] = map[goldenDir]bool{}
		}
		seen[g.Kind][g.Dir] = true
	}
	// Every opcode the Java client and kazoo send must be covered in both
	// directions. Not covered: check (13) standalone and deleteContainer
	// (20), which neither client sends.
	for _, op := range goldenRequiredOps {
		name := op.String()
		if !seen[name][dirRequest] || !seen[name][dirReply] {
			t.Errorf("golden frames lack %v (request %v, reply %v)", op, seen[name][dirRequest], seen[name][dirReply])
		}
	}
	for _, k := range []string{goldenConnect, OpNotification.String()} {
		if len(seen[k]) == 0 {
			t.Errorf("golden frames lack %s", k)
		}
	}
}

var goldenRequiredOps = []Op{
	OpCreate, OpDelete, OpExists, OpGetData, OpSetData, OpGetACL, OpSetACL,
	OpGetChildren, OpSync, OpPing, OpGetChildren2, OpMulti, OpCreate2,
	OpReconfig, OpCheckWatches, OpRemoveWatches, OpCreateContainer,
	OpCreateTTL, OpMultiRead, OpAuth, OpSetWatches, OpSASL, OpGetEphemerals,
	OpGetAllChildrenNumber, OpSetWatches2, OpAddWatch, OpWhoAmI,
	OpCloseSession,
}

// CapturedFrame is one frame recorded by the capture test (capture_test.go,
// package jute_test, which cannot be in package jute because
// internal/testkit/zktest imports jute).
type CapturedFrame struct {
	// Conn numbers the relayed connections; Index counts the frames of one
	// connection and direction from 0 (0 is the connect record).
	Conn, Index int
	FromServer  bool
	Bytes       []byte
}

// goldenPerKind caps how many distinct frames of one direction, kind and
// error code a golden file keeps; the capture repeats pings and the like.
const goldenPerKind = 4

// labelFrames names each recorded frame: connect records first on each
// connection, requests by their header, replies by the op of the request
// with the same xid on the same connection.
func labelFrames(t *testing.T, frames []CapturedFrame) []goldenFrame {
	t.Helper()
	pending := map[int]map[Xid]Op{}
	var out []goldenFrame
	for _, f := range frames {
		if pending[f.Conn] == nil {
			pending[f.Conn] = map[Xid]Op{}
		}
		g := goldenFrame{Frame: f.Bytes, Line: f.Conn}
		if f.FromServer {
			g.Dir = dirReply
		}
		switch {
		case f.Index == 0:
			g.Kind = goldenConnect
		case !f.FromServer:
			h, err := PeekRequestHeader(f.Bytes[4:])
			if err != nil {
				t.Fatalf("conn %d request %d: %v", f.Conn, f.Index, err)
			}
			pending[f.Conn][h.Xid] = h.Op
			g.Op = h.Op
		default:
			h, err := PeekReplyHeader(f.Bytes[4:])
			if err != nil {
				t.Fatalf("conn %d reply %d: %v", f.Conn, f.Index, err)
			}
			op, ok := pending[f.Conn][h.Xid]
			if h.Xid == XidNotification {
				op, ok = OpNotification, true
			}
			if !ok {
				t.Fatalf("conn %d reply %d: xid %d answers no request", f.Conn, f.Index, h.Xid)
			}
			g.Op = op
		}
		if g.Kind == "" {
			g.Kind = g.Op.String()
		}
		out = append(out, g)
	}
	return out
}

// WriteGoldenCapture labels captured frames, keeps up to goldenPerKind
// distinct frames per direction, kind and error code, checks that each
// decodes and re-encodes identically, and writes them to
// testdata/golden/<name> with a decoded comment.
func WriteGoldenCapture(t *testing.T, name, source string, captured []CapturedFrame) {
	t.Helper()
	frames := labelFrames(t, captured)
	var b strings.Builder
	fmt.Fprintf(&b, "# Golden frames: %s against ZooKeeper 3.8, captured through\n", source)
	b.WriteString("# internal/testkit/zktest/relay by TestCaptureGolden (go test ./jute -run TestCaptureGolden -update).\n")
	b.WriteString("# Format: <dir> <kind> <frame hex>; > client to server, < server to client. Do not edit.\n")
	count := map[string]int{}
	seen := map[string]bool{}
	conn := -1
	for _, g := range frames {
		key := fmt.Sprintf("%d %s", g.Dir, g.Kind)
		if g.Dir == dirReply && g.Kind != goldenConnect {
			h, _ := PeekReplyHeader(g.Frame[4:])
			key += " " + h.Err.String()
		}
		if seen[string(g.Frame)] || count[key] >= goldenPerKind {
			continue
		}
		desc, err := checkGoldenFrame(g)
		if err != nil {
			t.Errorf("%s conn %d %s: %v", name, g.Line, g.Kind, err)
			continue
		}
		seen[string(g.Frame)] = true
		count[key]++
		if g.Line != conn {
			conn = g.Line
			fmt.Fprintf(&b, "\n# connection %d\n", conn)
		}
		dir := ">"
		if g.Dir == dirReply {
			dir = "<"
		}
		fmt.Fprintf(&b, "# %s\n%s %s %s\n", desc, dir, g.Kind, hex.EncodeToString(g.Frame))
	}
	path := filepath.Join("testdata", "golden", name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
