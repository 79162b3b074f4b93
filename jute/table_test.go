package jute

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// clientOps is every opcode a ZooKeeper 3.9 client can send (issue 3).
var clientOps = []Op{
	OpCreate, OpDelete, OpExists, OpGetData, OpSetData, OpGetACL, OpSetACL,
	OpGetChildren, OpSync, OpPing, OpGetChildren2, OpCheck, OpMulti, OpCreate2,
	OpReconfig, OpCheckWatches, OpRemoveWatches, OpCreateContainer,
	OpDeleteContainer, OpCreateTTL, OpMultiRead, OpAuth, OpSetWatches, OpSASL,
	OpGetEphemerals, OpGetAllChildrenNumber, OpSetWatches2, OpAddWatch,
	OpWhoAmI, OpCloseSession,
}

// bodyless lists the ops whose request or reply has no body.
var (
	bodylessRequests = map[Op]bool{OpPing: true, OpWhoAmI: true, OpCloseSession: true}
	bodylessReplies  = map[Op]bool{
		OpDelete: true, OpPing: true, OpCheckWatches: true, OpRemoveWatches: true,
		OpDeleteContainer: true, OpAuth: true, OpSetWatches: true, OpSetWatches2: true,
		OpCloseSession: true,
	}
)

func TestOpTableComplete(t *testing.T) {
	if len(opRecords) != len(clientOps) {
		t.Fatalf("table has %d ops, want %d", len(opRecords), len(clientOps))
	}
	for _, op := range clientOps {
		if name := op.String(); strings.HasPrefix(name, "op(") || !op.Known() {
			t.Errorf("%d has no name", op)
		}
		req, ok := NewRequestRecord(op)
		if !ok || (req == nil) != bodylessRequests[op] {
			t.Errorf("%v: request record %T, ok %v", op, req, ok)
		}
		rsp, ok := NewResponseRecord(op)
		if !ok || (rsp == nil) != bodylessReplies[op] {
			t.Errorf("%v: response record %T, ok %v", op, rsp, ok)
		}
		// Constructors must return fresh values.
		if req != nil {
			again, _ := NewRequestRecord(op)
			if reflect.ValueOf(req).Pointer() == reflect.ValueOf(again).Pointer() {
				t.Errorf("%v: request record shared", op)
			}
		}
	}
	for _, op := range []Op{OpNotification, OpCreateSession, OpError, 10, 23, 99, 108, -12} {
		if _, ok := NewRequestRecord(op); ok {
			t.Errorf("%v accepted as a client request", op)
		}
	}
}

func TestOpStrings(t *testing.T) {
	want := map[Op]string{
		OpCreate: "create", OpGetChildren2: "getChildren2", OpSASL: "sasl", OpWhoAmI: "whoAmI",
		OpCloseSession: "closeSession", OpCreateSession: "createSession", OpError: "error",
		OpNotification: "notification", OpMultiRead: "multiRead", 10: "op(10)", 1000: "op(1000)",
	}
	for op, s := range want {
		if op.String() != s {
			t.Errorf("%d: %q, want %q", int32(op), op.String(), s)
		}
	}
	if ErrNoNode.String() != "NONODE" || ErrThrottledOp.String() != "THROTTLEDOP" || ErrCode(-999).String() != "err(-999)" {
		t.Error("ErrCode names")
	}
	if SessionID(0x1a2b).String() != "0x0000000000001a2b" || SessionID(-1).String() != "0xffffffffffffffff" {
		t.Errorf("SessionID: %s %s", SessionID(0x1a2b), SessionID(-1))
	}
	if Zxid(0x100000002).String() != "0x100000002" || Zxid(-1).String() != "-0x1" {
		t.Errorf("Zxid: %s %s", Zxid(0x100000002), Zxid(-1))
	}
	if XidPing.String() != "ping(-2)" || Xid(5).String() != "5" {
		t.Error("Xid names")
	}
	checks := []struct{ got, want string }{
		{EventNodeChildrenChanged.String(), "NodeChildrenChanged"},
		{EventType(99).String(), "EventType(99)"},
		{StateExpired.String(), "Expired"},
		{KeeperState(2).String(), "KeeperState(2)"},
		{CreateEphemeralSequential.String(), "EPHEMERAL_SEQUENTIAL"},
		{CreateMode(9).String(), "CreateMode(9)"},
		{WatcherPersistentRecursive.String(), "PersistentRecursive"},
		{WatcherType(0).String(), "WatcherType(0)"},
		{AddWatchPersistentRecursive.String(), "PERSISTENT_RECURSIVE"},
		{AddWatchMode(2).String(), "AddWatchMode(2)"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
}

func TestErrCodeNamesComplete(t *testing.T) {
	// KeeperException.Code, 3.9.
	codes := map[int32]string{
		0: "OK", -1: "SYSTEMERROR", -2: "RUNTIMEINCONSISTENCY", -3: "DATAINCONSISTENCY",
		-4: "CONNECTIONLOSS", -5: "MARSHALLINGERROR", -6: "UNIMPLEMENTED", -7: "OPERATIONTIMEOUT",
		-8: "BADARGUMENTS", -12: "UNKNOWNSESSION", -13: "NEWCONFIGNOQUORUM", -14: "RECONFIGINPROGRESS",
		-100: "APIERROR", -101: "NONODE", -102: "NOAUTH", -103: "BADVERSION",
		-108: "NOCHILDRENFOREPHEMERALS", -110: "NODEEXISTS", -111: "NOTEMPTY", -112: "SESSIONEXPIRED",
		-113: "INVALIDCALLBACK", -114: "INVALIDACL", -115: "AUTHFAILED", -118: "SESSIONMOVED",
		-119: "NOTREADONLY", -120: "EPHEMERALONLOCALSESSION", -121: "NOWATCHER", -122: "REQUESTTIMEOUT",
		-123: "RECONFIGDISABLED", -124: "SESSIONCLOSEDREQUIRESASLAUTH", -125: "QUOTAEXCEEDED", -127: "THROTTLEDOP",
	}
	for c, name := range codes {
		if got := ErrCode(c).String(); got != name {
			t.Errorf("%d: %q, want %q", c, got, name)
		}
	}
	if len(errCodeNames) != len(codes) {
		t.Errorf("%d names, want %d", len(errCodeNames), len(codes))
	}
}

func TestDecodeRequestEveryOp(t *testing.T) {
	for _, tc := range roundTripCases {
		for _, op := range clientOps {
			body, _ := NewRequestRecord(op)
			if body == nil || reflect.TypeOf(body) != reflect.TypeOf(tc.rec) {
				continue
			}
			hdr := RequestHeader{Xid: 42, Op: op}
			frame := AppendRequestFrame(nil, hdr, tc.rec)
			h, got, err := DecodeRequest(frame[4:])
			if err != nil || h != hdr || !reflect.DeepEqual(got, tc.rec) {
				t.Errorf("%v/%s: %+v %+v %v", op, tc.name, h, got, err)
				continue
			}
			if again := AppendRequestFrame(nil, h, got); !bytes.Equal(again, frame) {
				t.Errorf("%v/%s: re-encoded differently", op, tc.name)
			}
		}
	}
	for op := range bodylessRequests {
		frame := AppendRequestFrame(nil, RequestHeader{Xid: 1, Op: op}, nil)
		if _, body, err := DecodeRequest(frame[4:]); err != nil || body != nil {
			t.Errorf("%v: %v %v", op, body, err)
		}
		if _, _, err := DecodeRequest(append(frame[4:], 0)); !errors.Is(err, ErrTrailingBytes) {
			t.Errorf("%v with a body: %v", op, err)
		}
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	frame := AppendRequestFrame(nil, RequestHeader{Xid: 9, Op: OpGetData}, &GetDataRequest{Path: "/abc", Watch: true})
	_, _, err := DecodeRequest(frame[4 : len(frame)-1])
	var de *DecodeError
	if !errors.As(err, &de) || de.Op != OpGetData || de.Xid != 9 || !de.HasHeader || de.Offset != 16 || de.Record != "GetDataRequest" {
		t.Fatalf("got %#v", err)
	}
	if !strings.Contains(err.Error(), "getData") || !strings.Contains(err.Error(), "offset 16") {
		t.Fatalf("message %q", err)
	}
	unknown := AppendRequestFrame(nil, RequestHeader{Xid: 1, Op: 55}, nil)
	if _, _, err := DecodeRequest(unknown[4:]); !errors.Is(err, ErrUnknownOp) {
		t.Fatalf("unknown op: %v", err)
	}
}

func TestDecodeReply(t *testing.T) {
	gd := &GetDataResponse{Data: []byte("v"), Stat: sampleStat}
	tests := []struct {
		name string
		op   Op
		h    ReplyHeader
		body Record
	}{
		{"getData", OpGetData, ReplyHeader{Xid: 3, Zxid: 7}, gd},
		{"exists NONODE", OpExists, ReplyHeader{Xid: 4, Zxid: 7, Err: ErrNoNode}, nil},
		{"ping", OpPing, ReplyHeader{Xid: XidPing, Zxid: 7}, nil},
		{"auth failed", OpAuth, ReplyHeader{Xid: XidAuth, Err: ErrAuthFailed}, nil},
		{"addWatch", OpAddWatch, ReplyHeader{Xid: 5, Zxid: 7}, &ErrorResponse{}},
		{"whoAmI", OpWhoAmI, ReplyHeader{Xid: 6, Zxid: 7}, &WhoAmIResponse{ClientInfo: []ClientInfo{{"ip", "127.0.0.1"}}}},
		{"error with body", OpCreate, ReplyHeader{Xid: 8, Zxid: 9, Err: ErrNodeExists}, &RawRecord{Bytes: []byte{0xff, 0xff, 0xff, 0xff}}},
		{"notification", OpNotification, ReplyHeader{Xid: XidNotification, Zxid: -1}, &WatcherEvent{Type: EventNodeCreated, State: StateSyncConnected, Path: "/n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := AppendReplyFrame(nil, tc.h, tc.body)
			h, body, err := DecodeReply(tc.op, frame[4:])
			if err != nil || h != tc.h || !reflect.DeepEqual(body, tc.body) {
				t.Fatalf("got %+v %#v %v", h, body, err)
			}
			if again := AppendReplyFrame(nil, h, body); !bytes.Equal(again, frame) {
				t.Fatalf("re-encoded %x, want %x", again, frame)
			}
		})
	}
	ping := AppendReplyFrame(nil, ReplyHeader{Xid: XidPing}, &ErrorResponse{})
	if _, _, err := DecodeReply(OpPing, ping[4:]); !errors.Is(err, ErrTrailingBytes) {
		t.Fatalf("ping with body: %v", err)
	}
}

func TestAppendRecordFrame(t *testing.T) {
	r := &ConnectResponse{TimeOut: 4000, SessionID: 1, Passwd: make([]byte, 16), HasReadOnly: true}
	frame := AppendRecordFrame([]byte("prefix"), r)
	if string(frame[:6]) != "prefix" || len(frame) != 6+4+37 || frame[9] != 37 {
		t.Fatalf("frame %x", frame)
	}
	var got ConnectResponse
	if err := Unmarshal(frame[10:], &got); err != nil || !reflect.DeepEqual(&got, r) {
		t.Fatalf("%+v %v", got, err)
	}
}
