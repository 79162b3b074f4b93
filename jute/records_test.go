package jute

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func strp(s string) *string { return &s }

var sampleStat = Stat{
	Czxid: 0x100000002, Mzxid: 0x100000003, Ctime: 1700000000000, Mtime: 1700000000001,
	Version: 1, Cversion: 2, Aversion: 3, EphemeralOwner: 0x1000001a2b3c0001,
	DataLength: 5, NumChildren: 6, Pzxid: 0x100000004,
}

var worldACL = []ACL{{Perms: PermAll, ID: Id{Scheme: "world", ID: "anyone"}}}

// roundTripCases holds at least one value of every record, with nil and
// empty variants where the wire distinguishes them.
var roundTripCases = []struct {
	name string
	rec  Record
}{
	{"ConnectRequest/readOnly", &ConnectRequest{LastZxidSeen: 0x200000005, TimeOut: 30000, SessionID: 0x1234, Passwd: make([]byte, 16), ReadOnly: true, HasReadOnly: true}},
	{"ConnectRequest/readOnlyFalse", &ConnectRequest{TimeOut: 4000, Passwd: make([]byte, 16), HasReadOnly: true}},
	{"ConnectRequest/noReadOnly", &ConnectRequest{TimeOut: 4000, Passwd: make([]byte, 16)}},
	{"ConnectRequest/nilPasswd", &ConnectRequest{TimeOut: 4000}},
	{"ConnectResponse/readOnly", &ConnectResponse{TimeOut: 4000, SessionID: -5, Passwd: []byte("0123456789abcdef"), ReadOnly: true, HasReadOnly: true}},
	{"ConnectResponse/noReadOnly", &ConnectResponse{TimeOut: 0, Passwd: make([]byte, 16)}},
	{"RequestHeader", &RequestHeader{Xid: 7, Op: OpGetData}},
	{"ReplyHeader", &ReplyHeader{Xid: -1, Zxid: -1, Err: ErrNoNode}},
	{"WatcherEvent", &WatcherEvent{Type: EventNodeDataChanged, State: StateSyncConnected, Path: "/p"}},
	{"WatcherEvent/emptyPath", &WatcherEvent{Type: EventNone, State: StateExpired, Path: ""}},
	{"Stat", &sampleStat},
	{"Id", &Id{Scheme: "digest", ID: "u:hash"}},
	{"Id/nullID", &Id{Scheme: "auth", NullID: true}},
	{"Id/emptyID", &Id{Scheme: "auth", ID: ""}},
	{"ACL", &ACL{Perms: PermRead | PermWrite, ID: Id{Scheme: "ip", ID: "127.0.0.1"}}},
	{"AuthPacket", &AuthPacket{Scheme: "digest", Auth: []byte("user:pw")}},
	{"AuthPacket/nilAuth", &AuthPacket{Scheme: "x"}},
	{"SetWatches", &SetWatches{RelativeZxid: 9, DataWatches: []string{"/a", "/b"}, ExistWatches: []string{}, ChildWatches: nil}},
	{"SetWatches2", &SetWatches2{RelativeZxid: 9, DataWatches: []string{"/a"}, ExistWatches: nil, ChildWatches: []string{"/"}, PersistentWatches: []string{}, PersistentRecursiveWatches: []string{"/r", ""}}},
	{"ExistsRequest", &ExistsRequest{Path: "/e", Watch: true}},
	{"ExistsResponse", &ExistsResponse{Stat: sampleStat}},
	{"GetDataRequest", &GetDataRequest{Path: "/d", Watch: false}},
	{"GetDataResponse", &GetDataResponse{Data: []byte("hello"), Stat: sampleStat}},
	{"GetDataResponse/nilData", &GetDataResponse{Data: nil, Stat: sampleStat}},
	{"GetDataResponse/emptyData", &GetDataResponse{Data: []byte{}, Stat: sampleStat}},
	{"GetChildrenRequest", &GetChildrenRequest{Path: "/", Watch: true}},
	{"GetChildrenResponse", &GetChildrenResponse{Children: []string{"a", "b"}}},
	{"GetChildrenResponse/empty", &GetChildrenResponse{Children: []string{}}},
	{"GetChildrenResponse/nil", &GetChildrenResponse{}},
	{"GetChildren2Request", &GetChildren2Request{Path: "/c", Watch: true}},
	{"GetChildren2Response", &GetChildren2Response{Children: []string{"x"}, Stat: sampleStat}},
	{"AddWatchRequest", &AddWatchRequest{Path: "/w", Mode: AddWatchPersistentRecursive}},
	{"RemoveWatchesRequest", &RemoveWatchesRequest{Path: "/w", Type: WatcherAny}},
	{"CheckWatchesRequest", &CheckWatchesRequest{Path: "/w", Type: WatcherData}},
	{"CreateRequest", &CreateRequest{Path: "/n", Data: []byte{0, 1}, ACL: worldACL, Flags: CreateEphemeralSequential}},
	{"CreateRequest/nils", &CreateRequest{Path: "/n"}},
	{"CreateRequest/emptyACL", &CreateRequest{Path: "/n", Data: []byte{}, ACL: []ACL{}}},
	{"CreateTTLRequest", &CreateTTLRequest{Path: "/t", Data: []byte("x"), ACL: worldACL, Flags: CreatePersistentWithTTL, TTL: 60000}},
	{"CreateResponse", &CreateResponse{Path: "/n0000000001"}},
	{"Create2Response", &Create2Response{Path: "/n", Stat: sampleStat}},
	{"DeleteRequest", &DeleteRequest{Path: "/n", Version: -1}},
	{"SetDataRequest", &SetDataRequest{Path: "/n", Data: []byte("v"), Version: 3}},
	{"SetDataResponse", &SetDataResponse{Stat: sampleStat}},
	{"GetACLRequest", &GetACLRequest{Path: "/n"}},
	{"GetACLResponse", &GetACLResponse{ACL: worldACL, Stat: sampleStat}},
	{"SetACLRequest", &SetACLRequest{Path: "/n", ACL: append(append([]ACL{}, worldACL...), ACL{Perms: PermAdmin, ID: Id{Scheme: "digest", ID: "a:b"}}), Version: 0}},
	{"SetACLResponse", &SetACLResponse{Stat: sampleStat}},
	{"SyncRequest", &SyncRequest{Path: "/"}},
	{"SyncResponse", &SyncResponse{Path: "/"}},
	{"CheckVersionRequest", &CheckVersionRequest{Path: "/n", Version: 4}},
	{"ReconfigRequest", &ReconfigRequest{JoiningServers: strp("server.4=127.0.0.1:2888:3888;2181"), CurConfigID: -1}},
	{"ReconfigRequest/empty", &ReconfigRequest{LeavingServers: strp(""), NewMembers: nil, CurConfigID: 0x100000000}},
	{"GetSASLRequest", &GetSASLRequest{Token: []byte{1, 2, 3}}},
	{"SetSASLResponse", &SetSASLResponse{Token: nil}},
	{"GetEphemeralsRequest", &GetEphemeralsRequest{PrefixPath: "/"}},
	{"GetEphemeralsResponse", &GetEphemeralsResponse{Ephemerals: []string{"/e1", "/e2"}}},
	{"GetAllChildrenNumberRequest", &GetAllChildrenNumberRequest{Path: "/"}},
	{"GetAllChildrenNumberResponse", &GetAllChildrenNumberResponse{TotalNumber: 42}},
	{"ErrorResponse", &ErrorResponse{Err: ErrOK}},
	{"ClientInfo", &ClientInfo{AuthScheme: "ip", User: "127.0.0.1"}},
	{"WhoAmIResponse", &WhoAmIResponse{ClientInfo: []ClientInfo{{"ip", "127.0.0.1"}, {"digest", "u"}}}},
	{"WhoAmIResponse/nil", &WhoAmIResponse{}},
	{"MultiHeader", &MultiHeader{Type: OpCreate, Done: false, Err: -1}},
	{"MultiRequest/allOps", &MultiRequest{Ops: []MultiOp{
		NewMultiOp(OpCreate, &CreateRequest{Path: "/a", Data: []byte("1"), ACL: worldACL}),
		NewMultiOp(OpCreate2, &CreateRequest{Path: "/b", ACL: worldACL, Flags: CreateEphemeral}),
		NewMultiOp(OpCreateContainer, &CreateRequest{Path: "/c", ACL: worldACL, Flags: CreateContainer}),
		NewMultiOp(OpCreateTTL, &CreateTTLRequest{Path: "/t", ACL: worldACL, Flags: CreatePersistentWithTTL, TTL: 5}),
		NewMultiOp(OpDelete, &DeleteRequest{Path: "/a", Version: -1}),
		NewMultiOp(OpSetData, &SetDataRequest{Path: "/b", Data: nil, Version: 0}),
		NewMultiOp(OpCheck, &CheckVersionRequest{Path: "/b", Version: 1}),
	}, End: multiEnd}},
	{"MultiRequest/read", &MultiRequest{Ops: []MultiOp{
		NewMultiOp(OpGetData, &GetDataRequest{Path: "/a"}),
		NewMultiOp(OpGetChildren, &GetChildrenRequest{Path: "/"}),
	}, End: multiEnd}},
	{"MultiRequest/empty", &MultiRequest{Ops: []MultiOp{}, End: multiEnd}},
	{"MultiRequest/oddTerminator", &MultiRequest{Ops: []MultiOp{}, End: MultiHeader{Type: 5, Done: true, Err: 7}}},
	{"MultiResponse/mixed", &MultiResponse{Results: []MultiResult{
		{MultiHeader{Type: OpCreate}, &CreateResponse{Path: "/a"}},
		{MultiHeader{Type: OpCreate2}, &Create2Response{Path: "/b", Stat: sampleStat}},
		{MultiHeader{Type: OpDelete}, nil},
		{MultiHeader{Type: OpSetData}, &SetDataResponse{Stat: sampleStat}},
		{MultiHeader{Type: OpCheck}, nil},
		{MultiHeader{Type: OpError, Err: ErrBadVersion}, &ErrorResponse{Err: ErrBadVersion}},
		{MultiHeader{Type: OpError, Err: ErrRuntimeInconsistency}, &ErrorResponse{Err: ErrRuntimeInconsistency}},
	}, End: multiEnd}},
	{"MultiResponse/read", &MultiResponse{Results: []MultiResult{
		{MultiHeader{Type: OpGetData}, &GetDataResponse{Data: []byte("x"), Stat: sampleStat}},
		{MultiHeader{Type: OpGetChildren}, &GetChildrenResponse{Children: []string{"a"}}},
		{MultiHeader{Type: OpError, Err: ErrNoNode}, &ErrorResponse{Err: ErrNoNode}},
	}, End: multiEnd}},
	{"RawRecord", &RawRecord{Bytes: []byte{0xff, 0xff, 0xff, 0xff}}},
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases {
		t.Run(tc.name, func(t *testing.T) {
			wire := Marshal(tc.rec)
			got := reflect.New(reflect.TypeOf(tc.rec).Elem()).Interface().(Record)
			if err := Unmarshal(wire, got); err != nil {
				t.Fatalf("Unmarshal(%x): %v", wire, err)
			}
			if !reflect.DeepEqual(got, tc.rec) {
				t.Fatalf("decoded %+v, want %+v", got, tc.rec)
			}
			if again := Marshal(got); !bytes.Equal(again, wire) {
				t.Fatalf("re-encoded %x, want %x", again, wire)
			}
			// Every proper prefix must fail cleanly with
			// io.ErrUnexpectedEOF, except where a shorter record is valid
			// on its own (the optional readOnly byte, a RawRecord).
			for n := 0; n < len(wire); n++ {
				r := reflect.New(reflect.TypeOf(tc.rec).Elem()).Interface().(Record)
				err := Unmarshal(wire[:n], r)
				if err == nil {
					if optionalTail(tc.rec, n, len(wire)) {
						continue
					}
					t.Fatalf("Unmarshal of %d/%d bytes succeeded", n, len(wire))
				}
				var de *DecodeError
				if !errors.As(err, &de) || de.Offset > n {
					t.Fatalf("Unmarshal of %d bytes: error %v is not a DecodeError within the input", n, err)
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("Unmarshal of %d bytes: %v, want io.ErrUnexpectedEOF", n, err)
				}
			}
		})
	}
}

func optionalTail(r Record, n, total int) bool {
	switch v := r.(type) {
	case *ConnectRequest:
		return v.HasReadOnly && n == total-1
	case *ConnectResponse:
		return v.HasReadOnly && n == total-1
	case *RawRecord:
		return true
	}
	return false
}

func TestConnectRequestWire(t *testing.T) {
	// The 45-byte ConnectRequest of a new Java 3.8 handle.
	wire := []byte{
		0, 0, 0, 0, // protocolVersion 0
		0, 0, 0, 0, 0, 0, 0, 0, // lastZxidSeen 0
		0, 0, 0x75, 0x30, // timeOut 30000
		0, 0, 0, 0, 0, 0, 0, 0, // sessionId 0
		0, 0, 0, 16, // passwd length 16
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // passwd
		0, // readOnly false
	}
	var r ConnectRequest
	if err := Unmarshal(wire, &r); err != nil {
		t.Fatal(err)
	}
	want := ConnectRequest{TimeOut: 30000, Passwd: make([]byte, 16), HasReadOnly: true}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	// Without the trailing byte (pre-3.4 clients): 44 bytes, kept that way.
	var old ConnectRequest
	if err := Unmarshal(wire[:44], &old); err != nil {
		t.Fatal(err)
	}
	if old.HasReadOnly || !bytes.Equal(Marshal(&old), wire[:44]) {
		t.Fatalf("44-byte request decoded as %+v / re-encoded as %x", old, Marshal(&old))
	}
	// Two trailing bytes are not a ConnectRequest.
	if err := Unmarshal(append(wire, 0), &old); !errors.Is(err, ErrTrailingBytes) {
		t.Fatalf("46 bytes: %v, want ErrTrailingBytes", err)
	}
}

func TestNotificationWire(t *testing.T) {
	// len=30 | xid -1 | zxid -1 | err 0 | type 3 | state 3 | "/p"
	frame := []byte{
		0, 0, 0, 30, // frame length
		0xff, 0xff, 0xff, 0xff, // xid -1
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // zxid -1
		0, 0, 0, 0, // err 0
		0, 0, 0, 3, // type NodeDataChanged
		0, 0, 0, 3, // state SyncConnected
		0, 0, 0, 2, '/', 'p', // path
	}
	h, body, err := DecodeReply(OpGetData, frame[4:])
	if err != nil {
		t.Fatal(err)
	}
	want := &WatcherEvent{Type: EventNodeDataChanged, State: StateSyncConnected, Path: "/p"}
	if h != (ReplyHeader{Xid: XidNotification, Zxid: -1}) || !reflect.DeepEqual(body, want) {
		t.Fatalf("got %+v %+v", h, body)
	}
	if got := AppendReplyFrame(nil, h, body); !bytes.Equal(got, frame) {
		t.Fatalf("re-encoded %x, want %x", got, frame)
	}
}

func TestNullAndInvalidFields(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		wire []byte
		want error
		off  int
	}{
		{"null path", &GetDataRequest{}, []byte{0xff, 0xff, 0xff, 0xff, 0}, ErrNullString, 0},
		{"length -2", &GetDataRequest{}, []byte{0xff, 0xff, 0xff, 0xfe, 0}, ErrInvalidLength, 0},
		{"bool 2", &GetDataRequest{}, []byte{0, 0, 0, 1, '/', 2}, ErrInvalidBool, 5},
		{"huge string", &SyncRequest{}, []byte{0x7f, 0xff, 0xff, 0xff, '/'}, io.ErrUnexpectedEOF, 0},
		{"huge vector", &GetChildrenResponse{}, []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0}, io.ErrUnexpectedEOF, 0},
		{"vector longer than bytes/4", &GetChildrenResponse{}, []byte{0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0}, io.ErrUnexpectedEOF, 0},
		{"null child", &GetChildrenResponse{}, []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}, ErrNullString, 4},
		{"trailing", &SyncRequest{}, []byte{0, 0, 0, 1, '/', 0}, ErrTrailingBytes, 5},
		{"bad multi op", &MultiRequest{}, []byte{0, 0, 0, 3, 0, 0xff, 0xff, 0xff, 0xff}, ErrInvalidMultiOp, 0},
		{"bad multi result", &MultiResponse{}, []byte{0, 0, 0, 100, 0, 0, 0, 0, 0}, ErrInvalidMultiOp, 0},
		{"multi without end", &MultiResponse{}, []byte{0, 0, 0, 2, 0, 0, 0, 0, 0}, io.ErrUnexpectedEOF, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Unmarshal(tc.wire, tc.rec)
			var de *DecodeError
			if !errors.Is(err, tc.want) || !errors.As(err, &de) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if de.Offset != tc.off {
				t.Fatalf("offset %d, want %d (%v)", de.Offset, tc.off, err)
			}
		})
	}
}

func TestReconfigNullStrings(t *testing.T) {
	// kazoo's write_string and Java's writeString(null) both write -1.
	wire := []byte{
		0xff, 0xff, 0xff, 0xff, // joiningServers null
		0, 0, 0, 0, // leavingServers ""
		0, 0, 0, 1, '3', // newMembers "3"
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // curConfigId -1
	}
	var r ReconfigRequest
	if err := Unmarshal(wire, &r); err != nil {
		t.Fatal(err)
	}
	if r.JoiningServers != nil || r.LeavingServers == nil || *r.LeavingServers != "" || *r.NewMembers != "3" || r.CurConfigID != -1 {
		t.Fatalf("decoded %+v", r)
	}
	if !bytes.Equal(Marshal(&r), wire) {
		t.Fatalf("re-encoded %x", Marshal(&r))
	}
}

func TestDecoderFirstErrorSticks(t *testing.T) {
	d := NewDecoder([]byte{0, 0, 0, 5, 1, 2, 3})
	if v := d.Int64(); v != 0 {
		t.Fatalf("Int64 past end = %d", v)
	}
	first := d.Err()
	if !errors.Is(first, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v", first)
	}
	if d.Int32() != 0 || d.Bool() || d.UString() != "" || d.Buffer() != nil || d.UStringVector() != nil || d.Byte() != 0 {
		t.Fatal("reads after an error returned non-zero values")
	}
	d.Fail(ErrTrailingBytes)
	if d.Err() != first {
		t.Fatal("first error replaced")
	}
	if d.Offset() != 0 {
		t.Fatalf("offset moved to %d", d.Offset())
	}
}

func TestDecodedRecordsDoNotAlias(t *testing.T) {
	wire := Marshal(&GetDataResponse{Data: []byte("abc"), Stat: sampleStat})
	var r GetDataResponse
	if err := Unmarshal(wire, &r); err != nil {
		t.Fatal(err)
	}
	for i := range wire {
		wire[i] = 0xee
	}
	if string(r.Data) != "abc" {
		t.Fatalf("data changed with the input: %q", r.Data)
	}
}
