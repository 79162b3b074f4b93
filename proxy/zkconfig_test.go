package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/jute"
)

// realConfig is /zookeeper/config as a 3.8 member with client addresses in
// its server lines stores it (QuorumVerifier.toString).
const realConfig = "server.1=10.0.0.1:2888:3888:participant;0.0.0.0:2181\n" +
	"server.2=10.0.0.2:2888:3888:participant;10.0.0.2:2181\n" +
	"server.3=10.0.0.3:2888:3888:observer;10.0.0.3:2181\n" +
	"group.1=1:2\nweight.1=1\nversion=100000003"

var proxies = []string{"zkproxy-a:2181", "[::1]:2182"}

func TestRewriteConfigData(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		advertise      []string
	}{
		{"members replaced, version kept", realConfig,
			"server.1=zkproxy-a:2888:3888:participant;zkproxy-a:2181\n" +
				"server.2=[::1]:2888:3888:participant;[::1]:2182\nversion=100000003\n", proxies},
		{"no server lines: nothing to hide", "", "", proxies},
		{"standalone without dynamic config", "version=0\n", "version=0\n", proxies},
		{"no advertised address: members hidden all the same", realConfig, "version=100000003\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(rewriteConfigData([]byte(tc.in), tc.advertise))
			if got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
			for _, leak := range []string{"10.0.0.", "0.0.0.0"} {
				if strings.Contains(got, leak) {
					t.Fatalf("rewritten config names a member (%s):\n%s", leak, got)
				}
			}
		})
	}
}

func replyPayload(h jute.ReplyHeader, body jute.Record) []byte {
	b := jute.AppendRecord(nil, &h)
	if body != nil {
		b = jute.AppendRecord(b, body)
	}
	return b
}

func TestConfigRequestAndReply(t *testing.T) {
	getData := func(path string) []byte { return jute.AppendRecord(nil, &jute.GetDataRequest{Path: path, Watch: true}) }
	stat := jute.Stat{Version: 7, Mzxid: 0x100000003, DataLength: int32(len(realConfig))}
	dataReply := &jute.GetDataResponse{Data: []byte(realConfig), Stat: stat}
	hdr := jute.ReplyHeader{Xid: 5, Zxid: 0x100000009}

	t.Run("getData of the config node", func(t *testing.T) {
		cr, standIn := configRequest(jute.OpGetData, 5, getData(configNode), true, false)
		if cr == nil || !cr.data || standIn != nil {
			t.Fatalf("configRequest = %+v, %v", cr, standIn)
		}
		out, err := rewriteConfigReply(cr, replyPayload(hdr, dataReply), proxies)
		if err != nil {
			t.Fatal(err)
		}
		var h jute.ReplyHeader
		var r jute.GetDataResponse
		if err := jute.Unmarshal(out[:jute.ReplyHeaderSize], &h); err != nil || h != hdr {
			t.Fatalf("header %+v, %v", h, err)
		}
		if err := jute.Unmarshal(out[jute.ReplyHeaderSize:], &r); err != nil {
			t.Fatal(err)
		}
		want := rewriteConfigData([]byte(realConfig), proxies)
		if !bytes.Equal(r.Data, want) || r.Stat.DataLength != int32(len(want)) || r.Stat.Version != 7 || r.Stat.Mzxid != stat.Mzxid {
			t.Fatalf("reply %q %+v", r.Data, r.Stat)
		}
		// A failed read (NoNode under a chroot, NoAuth) passes unchanged.
		failed := replyPayload(jute.ReplyHeader{Xid: 5, Err: jute.ErrNoNode}, nil)
		if out, _ := rewriteConfigReply(cr, failed, proxies); !bytes.Equal(out, failed) {
			t.Fatalf("error reply changed: %x", out)
		}
	})
	t.Run("other paths and a chroot's own copy are left alone", func(t *testing.T) {
		for _, p := range []string{"/kafka/zookeeper/config", "/zookeeper/configx", "/zookeeper", "/"} {
			if cr, _ := configRequest(jute.OpGetData, 5, getData(p), true, false); cr != nil {
				t.Errorf("%s: %+v", p, cr)
			}
		}
	})
	t.Run("pass-through", func(t *testing.T) {
		if cr, _ := configRequest(jute.OpGetData, 5, getData(configNode), false, false); cr != nil {
			t.Fatalf("rewrite off: %+v", cr)
		}
	})
	t.Run("multiRead", func(t *testing.T) {
		req := &jute.MultiRequest{Ops: []jute.MultiOp{
			jute.NewMultiOp(jute.OpGetChildren, &jute.GetChildrenRequest{Path: "/zookeeper"}),
			jute.NewMultiOp(jute.OpGetData, &jute.GetDataRequest{Path: configNode}),
			jute.NewMultiOp(jute.OpGetData, &jute.GetDataRequest{Path: "/a"}),
		}}
		cr, _ := configRequest(jute.OpMultiRead, 5, jute.AppendRecord(nil, req), true, false)
		if cr == nil || len(cr.multiOps) != 1 || cr.multiOps[0] != 1 {
			t.Fatalf("configRequest = %+v", cr)
		}
		other := &jute.GetDataResponse{Data: []byte("server.9=keep me"), Stat: jute.Stat{DataLength: 16}}
		resp := &jute.MultiResponse{Results: []jute.MultiResult{
			{Header: jute.MultiHeader{Type: jute.OpGetChildren, Err: -1}, Response: &jute.GetChildrenResponse{Children: []string{"config", "quota"}}},
			{Header: jute.MultiHeader{Type: jute.OpGetData, Err: -1}, Response: dataReply},
			{Header: jute.MultiHeader{Type: jute.OpGetData, Err: -1}, Response: other},
		}}
		out, err := rewriteConfigReply(cr, replyPayload(hdr, resp), proxies)
		if err != nil {
			t.Fatal(err)
		}
		var got jute.MultiResponse
		if err := jute.Unmarshal(out[jute.ReplyHeaderSize:], &got); err != nil {
			t.Fatal(err)
		}
		cfg := got.Results[1].Response.(*jute.GetDataResponse)
		if strings.Contains(string(cfg.Data), "10.0.0.") || !strings.Contains(string(cfg.Data), "zkproxy-a") {
			t.Errorf("config result: %q", cfg.Data)
		}
		if d := got.Results[2].Response.(*jute.GetDataResponse).Data; string(d) != "server.9=keep me" {
			t.Errorf("other getData result changed: %q", d)
		}
		plain := jute.AppendRecord(nil, &jute.MultiRequest{Ops: []jute.MultiOp{jute.NewMultiOp(jute.OpGetData, &jute.GetDataRequest{Path: "/a"})}})
		if cr, _ := configRequest(jute.OpMultiRead, 5, plain, true, false); cr != nil {
			t.Errorf("multiRead without the node: %+v", cr)
		}
	})
	t.Run("reconfig refused in its place", func(t *testing.T) {
		cr, standIn := configRequest(jute.OpReconfig, 9, nil, true, false)
		if cr == nil || !cr.refuseReconfig || standIn == nil {
			t.Fatalf("configRequest = %+v, %x", cr, standIn)
		}
		var rh jute.RequestHeader
		var ex jute.ExistsRequest
		if err := jute.Unmarshal(standIn[4:4+jute.RequestHeaderSize], &rh); err != nil || rh.Xid != 9 || rh.Op != jute.OpExists {
			t.Fatalf("stand-in header %+v %v", rh, err)
		}
		if err := jute.Unmarshal(standIn[4+jute.RequestHeaderSize:], &ex); err != nil || ex.Path != "/" || ex.Watch {
			t.Fatalf("stand-in body %+v %v", ex, err)
		}
		existsReply := replyPayload(jute.ReplyHeader{Xid: 9, Zxid: 0x10000000a}, &jute.ExistsResponse{})
		out, err := rewriteConfigReply(cr, existsReply, proxies)
		if err != nil {
			t.Fatal(err)
		}
		want := replyPayload(jute.ReplyHeader{Xid: 9, Zxid: 0x10000000a, Err: jute.ErrReconfigDisabled}, nil)
		if !bytes.Equal(out, want) {
			t.Fatalf("refusal %x, want %x", out, want)
		}
		cr, standIn = configRequest(jute.OpReconfig, 9, nil, true, true)
		if cr == nil || !cr.data || standIn != nil {
			t.Fatalf("allowed reconfig: %+v %x", cr, standIn)
		}
	})
	t.Run("undecodable reply is an error, not a panic", func(t *testing.T) {
		cr := &configReply{data: true}
		if _, err := rewriteConfigReply(cr, replyPayload(hdr, nil), proxies); err == nil {
			t.Fatal("no error for a getData reply without a body")
		}
	})
}

func TestRewriteConfAnswer(t *testing.T) {
	member := "clientPort=2181\nsecureClientPort=-1\ndataDir=/var/lib/zookeeper/version-2\ndataDirSize=457\n" +
		"dataLogDir=/var/lib/zookeeper/version-2\ndataLogSize=457\ntickTime=2000\nmaxClientCnxns=60\n" +
		"minSessionTimeout=4000\nmaxSessionTimeout=40000\nclientPortListenBacklog=-1\nserverId=1\ninitLimit=10\n" +
		"syncLimit=5\nelectionAlg=3\nelectionPort=3888\nquorumPort=2888\npeerType=0\nmembership: \n" + realConfig + "\n"
	got := rewriteConfAnswer(member, proxies)
	for _, leak := range []string{"10.0.0.", "dataDir", "serverId", "electionPort", "/var/lib"} {
		if strings.Contains(got, leak) {
			t.Errorf("conf answer leaks %q:\n%s", leak, got)
		}
	}
	c, err := fourlw.ParseConf(got)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != "100000003" || len(c.Members) != 2 || c.Members[1] != "zkproxy-a:2888:3888:participant;zkproxy-a:2181" ||
		c.Settings["tickTime"] != "2000" || c.Settings["clientPort"] != "2181" {
		t.Errorf("parsed %+v from\n%s", c, got)
	}
}

func TestDefaultAdvertise(t *testing.T) {
	for listen, want := range map[string]string{"127.1.2.3:2181": "127.1.2.3:2181", "zk.example:2181": "zk.example:2181"} {
		got, err := DefaultAdvertise(listen)
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("DefaultAdvertise(%q) = %v, %v", listen, got, err)
		}
	}
	for _, wild := range []string{":2181", "0.0.0.0:2181", "[::]:2181"} {
		got, err := DefaultAdvertise(wild)
		if err != nil || len(got) != 1 || strings.HasPrefix(got[0], ":") || strings.HasPrefix(got[0], "0.0.0.0") || strings.HasPrefix(got[0], "[::]") {
			t.Errorf("DefaultAdvertise(%q) = %v, %v", wild, got, err)
		}
	}
	if _, err := DefaultAdvertise("127.0.0.1:0"); err == nil {
		t.Error("port 0 accepted")
	}
	if err := (Config{Source: []string{"a:1"}, Advertise: []string{"0.0.0.0:2181", "nohost", "h:99999"}}).Validate(); err == nil ||
		strings.Count(err.Error(), "advertise:") != 3 {
		t.Errorf("Validate: %v", err)
	}
}
