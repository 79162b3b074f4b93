package proxy

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func sampleHandoffSession() handoffSession {
	return handoffSession{
		ID: 0x1000a2b3c4d5e6f, Passwd: []byte("0123456789abcdef"), ReqTimeout: 30000, ClientTimeout: 18000,
		HasReadOnly: true, ReadOnly: false, LastZxid: 0x500000012, LastClientFrame: 1700000000123456789,
		ExpireBy: 1700000018123456789, Created: 1690000000000000000, Attaches: 3,
		AuthLog: [][]byte{{0, 0, 0, 3, 1, 2, 3}},
		Watches: [5][]string{{"/a", "/b"}, {"/gone"}, {"/brokers/ids"}, {"/p"}, {"/r"}},
		Held:    [][]byte{{0, 0, 0, 2, 9, 9}, {0, 0, 0, 1, 7}},
		Partial: []byte{0, 0, 0, 40, 1},
		Recved:  12, Sent: 11,
		Ensemble: []string{"10.0.0.1:2181", "10.0.0.2:2181"},
	}
}

func TestHandoffWireRoundTrip(t *testing.T) {
	want := sampleHandoffSession()
	got, err := decodeSession(want.encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	hello := handoffHello{Version: "v1.2.3", Accepts: []uint16{1, 2}, PID: 4242, Listener: "127.0.0.1:2181"}
	if h, err := decodeHello(hello.encode()); err != nil || !reflect.DeepEqual(h, hello) {
		t.Fatalf("hello: %+v, %v", h, err)
	}
	begin := handoffBegin{Version: 7}
	if b, err := decodeBegin(begin.encode()); err != nil || b != begin {
		t.Fatalf("begin: %+v, %v", b, err)
	}
	ack := handoffAck{SessionID: 5, OK: false, Reason: "no"}
	if a, err := decodeAck(ack.encode()); err != nil || a != ack {
		t.Fatalf("ack: %+v, %v", a, err)
	}
}

func TestHandoffWireBadInput(t *testing.T) {
	sample := sampleHandoffSession()
	good := sample.encode()
	huge := append([]byte(nil), good[:8]...)
	huge = binary.BigEndian.AppendUint32(huge, 0xffffffff) // password length
	zeroID := sampleHandoffSession()
	zeroID.ID = 0
	badHeld := sampleHandoffSession()
	badHeld.Held = [][]byte{{0, 0, 0, 9, 1}}
	badBool := append([]byte(nil), good...)
	badBool[8+4+16+4+8] = 2 // HasReadOnly
	for name, body := range map[string][]byte{
		"empty":          nil,
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte(nil), good...), 0),
		"length too big": huge,
		"session id 0":   zeroID.encode(),
		"held not frame": badHeld.encode(),
		"bad boolean":    badBool,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeSession(body); !errors.Is(err, errHandoffDecode) {
				t.Fatalf("decodeSession: %v, want errHandoffDecode", err)
			}
		})
	}
	if _, err := decodeHello([]byte("NOTMAGIC\x00\x00\x00\x00")); !errors.Is(err, errHandoffDecode) {
		t.Fatalf("hello without magic: %v", err)
	}
	if _, err := decodeBegin(nil); !errors.Is(err, errHandoffDecode) {
		t.Fatalf("empty begin: %v", err)
	}
}

func FuzzDecodeHandoffSession(f *testing.F) {
	sample := sampleHandoffSession()
	f.Add(sample.encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeSession(body)
		if err != nil {
			return
		}
		again, err := decodeSession(r.encode())
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding a decoded record: %v", err)
		}
	})
}
