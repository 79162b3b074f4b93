package fourlw

import (
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
	if s.Mode != "leader" || s.Zxid != 0x30000001c || s.Epoch() != 3 || s.NodeCount != 23 || s.Connections != 2 {
		t.Fatalf("parsed %+v", s)
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
