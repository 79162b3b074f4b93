package fourlw

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
)

// Answers below were captured from Debian's ZooKeeper 3.8.0.

const srvrLeader = `Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC
Latency min/avg/max: 0/0.5/3
Received: 120
Sent: 119
Connections: 2
Outstanding: 0
Zxid: 0x30000001c
Mode: leader
Node count: 23
Proposal sizes last/min/max: 48/36/92
`

func TestParseSrvr(t *testing.T) {
	s, err := ParseSrvr(srvrLeader)
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode != "leader" || s.Zxid != 0x30000001c || s.Epoch() != 3 || s.NodeCount != 23 || s.Connections != 2 || !s.Serving() {
		t.Fatalf("parsed %+v", s)
	}
	if ro, err := ParseSrvr("Zxid: 0x1\nMode: read-only\n"); err != nil || ro.Serving() {
		t.Fatalf("read-only member: %+v, %v", ro, err)
	}
	if _, err := ParseSrvr("imok"); err == nil {
		t.Fatal("an answer without Zxid/Mode parsed")
	}
	if _, err := ParseSrvr("Zxid: 0xzz\nMode: leader\n"); err == nil {
		t.Fatal("a bad zxid parsed")
	}
}

func TestParseMntr(t *testing.T) {
	m, err := ParseMntr("zk_version\t3.8.0\nzk_server_state\tfollower\nzk_znode_count\t23\nzk_peer_state\tfollowing - broadcast\n")
	if err != nil {
		t.Fatal(err)
	}
	if m["zk_server_state"] != "follower" || m["zk_znode_count"] != "23" || m["zk_peer_state"] != "following - broadcast" {
		t.Fatalf("parsed %v", m)
	}
	if _, err := ParseMntr("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestParseConf(t *testing.T) {
	c, err := ParseConf(`clientPort=2181
secureClientPort=-1
dataDir=/tmp/d/version-2
tickTime=200
maxClientCnxns=0
serverId=4
initLimit=10
membership: 
server.1=127.0.1.1:2888:3888:participant;127.0.1.1:2181
server.2=127.0.1.2:2888:3888:participant;127.0.1.2:2181
server.4=127.0.1.4:2888:3888:participant;127.0.1.4:2181
version=100000000
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerID != 4 || len(c.Members) != 3 || c.Version != "100000000" || c.Settings["maxClientCnxns"] != "0" {
		t.Fatalf("parsed %+v", c)
	}
	if c.Members[2] != "127.0.1.2:2888:3888:participant;127.0.1.2:2181" {
		t.Fatalf("member 2 = %q", c.Members[2])
	}
}

func TestParseHash(t *testing.T) {
	d, err := ParseHash("80: 39228854707\n100: 38213287849\na00: 48745126200\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 3 || d[2].Zxid != 0xa00 || d[2].Digest != 48745126200 {
		t.Fatalf("parsed %+v", d)
	}
	if _, err := ParseHash("80 39228854707\n"); err == nil {
		t.Fatal("a line without colon parsed")
	}
}

// Captured from ZooKeeper 3.8.0 (NIO factory): the word's own connection
// first, without a session.
const consAnswer = ` /127.0.0.1:57398[0](queued=0,recved=1,sent=0)
 /127.0.0.1:57382[1](queued=0,recved=9,sent=9,sid=0x10000c174a90f80,lop=CREA,est=1796320406098,to=10000,lcxid=0x8,lzxid=0x1fbf,lresp=13205529,llat=1,minlat=0,avglat=0,maxlat=3)
 /0:0:0:0:0:0:0:1:57390[1](queued=0,recved=3,sent=3,sid=0x10000c174a90f81,lop=CREA,est=1796320406100,to=10000,lcxid=0x2,lzxid=0x1fc1,lresp=13205531,llat=0,minlat=0,avglat=0,maxlat=1)

`

func TestParseCons(t *testing.T) {
	conns, err := ParseCons(consAnswer)
	if err != nil {
		t.Fatal(err)
	}
	want := []Conn{{"127.0.0.1:57398", 0}, {"127.0.0.1:57382", 0x10000c174a90f80}, {"0:0:0:0:0:0:0:1:57390", 0x10000c174a90f81}}
	if len(conns) != len(want) {
		t.Fatalf("parsed %+v", conns)
	}
	for i := range want {
		if conns[i] != want[i] {
			t.Errorf("connection %d: %+v, want %+v", i, conns[i], want[i])
		}
	}
	for _, bad := range []string{"imok", " /1.2.3.4:5[1](sid=0xzz)", " /1.2.3.4:5[1](queued=0"} {
		if _, err := ParseCons(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

const dumpAnswer = `SessionTracker dump:
Session Sets (1)/(2):
2 expire at Thu Dec 03 17:53:36 UTC 2026:
	0x10000c174a90f80
	0x10000c174a90f81
ephemeral nodes dump:
Sessions with Ephemerals (2):
0x10000c174a90f80:
	/t/brokers/ids/1
0x10000c174a90f81:
	/t/brokers/ids/2
	/t/ctl
Connections dump:
Connections Sets (1)/(3):
3 expire at Thu Dec 03 17:53:40 UTC 2026:
	ip: /127.0.0.1:57382 sessionId: 0x10000c174a90f80
`

func TestParseEphemerals(t *testing.T) {
	eph, err := ParseEphemerals(dumpAnswer)
	if err != nil {
		t.Fatal(err)
	}
	if len(eph) != 2 || len(eph[0x10000c174a90f80]) != 1 || eph[0x10000c174a90f80][0] != "/t/brokers/ids/1" ||
		len(eph[0x10000c174a90f81]) != 2 || eph[0x10000c174a90f81][1] != "/t/ctl" {
		t.Fatalf("parsed %v", eph)
	}
	// A follower's dump: its tracker prints one line, the tree is the same.
	eph, err = ParseEphemerals("SessionTracker dump:\norg.apache.zookeeper.server.quorum.LearnerSessionTracker@3a8ed14a\nephemeral nodes dump:\nSessions with Ephemerals (0):\n")
	if err != nil || len(eph) != 0 {
		t.Fatalf("empty dump: %v %v", eph, err)
	}
	if _, err := ParseEphemerals("imok"); err == nil {
		t.Fatal("an answer without the ephemerals section parsed")
	}
	if _, err := ParseEphemerals("Sessions with Ephemerals (1):\n\t/a\n"); err == nil {
		t.Fatal("a path before any session parsed")
	}
}

// answering dials a server that reads the word and answers with answer.
func answering(answer []byte) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			word := make([]byte, 4)
			if _, err := io.ReadFull(server, word); err != nil {
				return
			}
			_, _ = server.Write(answer)
		}()
		return client, nil
	}
}

func TestQueryAnswerBounds(t *testing.T) {
	ctx := context.Background()
	full := bytes.Repeat([]byte("x"), maxAnswer)
	if ans, err := Query(ctx, answering(full), "m:2181", "dump"); err != nil || len(ans) != maxAnswer {
		t.Fatalf("an answer of exactly the limit: %d bytes, %v", len(ans), err)
	}
	if _, err := Query(ctx, answering(append(full, 'y')), "m:2181", "dump"); !errors.Is(err, ErrAnswerTooLarge) {
		t.Fatalf("an answer over the limit: %v", err)
	}
	if _, err := Query(ctx, answering([]byte("This ZooKeeper instance is not currently serving requests\n")), "m:2181", "srvr"); !errors.Is(err, ErrNotServing) {
		t.Fatalf("member not serving: %v", err)
	}
	if _, err := Query(ctx, answering(nil), "m:2181", "hash"); !errors.Is(err, ErrEmptyAnswer) {
		t.Fatalf("no answer: %v", err)
	}
	if _, err := Query(ctx, answering([]byte("dump is not executed because it is not in the whitelist.\n")), "m:2181", "dump"); !errors.Is(err, ErrNotWhitelisted) {
		t.Fatalf("refused word: %v", err)
	}
}

// TestQueryRaw: the raw answer carries the server's refusals as it wrote
// them (what the proxy relays), where Query turns them into errors.
func TestQueryRaw(t *testing.T) {
	ctx := context.Background()
	refusal := "dump is not executed because it is not in the whitelist.\n"
	if ans, err := QueryRaw(ctx, answering([]byte(refusal)), "m:2181", "dump"); err != nil || ans != refusal {
		t.Fatalf("refused word: %q, %v", ans, err)
	}
	if ans, err := QueryRaw(ctx, answering(nil), "m:2181", "hash"); err != nil || ans != "" {
		t.Fatalf("no answer: %q, %v", ans, err)
	}
	if _, err := QueryRaw(ctx, answering(append(bytes.Repeat([]byte("x"), maxAnswer), 'y')), "m:2181", "dump"); !errors.Is(err, ErrAnswerTooLarge) {
		t.Fatalf("an answer over the limit: %v", err)
	}
	if _, err := QueryRaw(ctx, answering(nil), "m:2181", "stats"); err == nil {
		t.Fatal("a five-letter word was sent")
	}
}

func TestQueryHash(t *testing.T) {
	ctx := context.Background()
	digests, err := QueryHash(ctx, answering([]byte("100000080: 123\n100000100: -45\n")), "m:2181")
	if err != nil || len(digests) != 2 || digests[1] != (Digest{Zxid: 0x100000100, Digest: -45}) {
		t.Fatalf("digests %+v, %v", digests, err)
	}
	// No digest logged yet: the member answers nothing.
	if digests, err := QueryHash(ctx, answering(nil), "m:2181"); err != nil || len(digests) != 0 {
		t.Fatalf("empty answer: %+v, %v", digests, err)
	}
	if _, err := QueryHash(ctx, answering([]byte("hash is not executed because it is not in the whitelist.\n")), "m:2181"); !errors.Is(err, ErrNotWhitelisted) {
		t.Fatalf("refused word: %v", err)
	}
}
