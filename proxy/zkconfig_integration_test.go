package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/internal/fourlw"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// curator wraps zktest.Curator for one test: each command gets 90 s.
type curator struct{ *zktest.Curator }

// do runs one command; a failure comes back as "ERR <code> <message>".
func (d curator) do(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := d.Do(ctx, args...)
	var ce *zktest.ClientError
	switch {
	case errors.As(err, &ce):
		return "ERR " + ce.Code + " " + ce.Message, false
	case err != nil:
		t.Fatal(err)
	}
	return out, true
}

func (d curator) must(t *testing.T, args ...string) string {
	t.Helper()
	out, ok := d.do(t, args...)
	if !ok {
		t.Fatalf("curator driver %q: %s", strings.Join(args, " "), out)
	}
	return out
}

// memberConf returns the membership lines a member reports (conf).
func memberConf(t *testing.T, m *zktest.Server) fourlw.Conf {
	t.Helper()
	out, err := m.FourLetter("conf")
	if err != nil {
		t.Fatal(err)
	}
	c, err := fourlw.ParseConf(out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// directSessions returns the session connections on the members that do not
// come from proxyIP (the proxy's only local address).
func directSessions(t *testing.T, ens *zktest.Ensemble, proxyIP string) []string {
	t.Helper()
	var direct []string
	for _, m := range ens.Members {
		if !m.Running() {
			continue
		}
		out, err := m.FourLetter("cons")
		if err != nil {
			continue // not serving right now: it has no clients either
		}
		conns, err := fourlw.ParseCons(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			host, _, _ := net.SplitHostPort(c.Remote)
			if c.SessionID != 0 && host != proxyIP {
				direct = append(direct, fmt.Sprintf("%s: %s sid %#x", m, c.Remote, c.SessionID))
			}
		}
	}
	return direct
}

// TestConfigRewriteRealClients puts zkproxy in front of a 3-member ensemble
// whose server lines carry client addresses, with reconfig enabled on the
// members (so a refusal is the proxy's), and checks what real clients see:
// Curator 5 keeps the proxy as its connection string through start, a member
// restart, config changes made on the members and a forced reconnect; the
// Java client's getConfig (with a chroot), kazoo and conf show the proxy;
// reconfig through the proxy is refused with ReconfigDisabled.
func TestConfigRewriteRealClients(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 3, zktest.WithClientAddrInServerLines(), zktest.WithConfig("reconfigEnabled=true"),
		zktest.WithJVMFlags("-Dzookeeper.skipACL=yes"))
	members := strings.Split(ens.ConnectString(), ",")
	proxyIP := zktest.LoopbackIP(t)
	px := startProxy(t, members, func(c *Config) { c.LocalAddrs = []string{proxyIP} })
	showsProxyOnly := func(t *testing.T, what, config string) {
		t.Helper()
		for _, ip := range ens.IPs() {
			if strings.Contains(config, ip) {
				t.Fatalf("%s names member %s: %q", what, ip, config)
			}
		}
		if !strings.Contains(config, "participant;"+px.Addr) || !strings.Contains(config, "version=") {
			t.Fatalf("%s does not name the proxy %s with a version: %q", what, px.Addr, config)
		}
	}
	onlyProxy := func(t *testing.T, d curator) {
		t.Helper()
		for _, cs := range d.ConnectionStrings() {
			if cs != px.Addr {
				t.Fatalf("Curator was handed %q (want only %s); all: %q", cs, px.Addr, d.ConnectionStrings())
			}
		}
		if conn := d.must(t, "conn"); conn != px.Addr+" "+px.Addr {
			t.Fatalf("Curator's connection string: %q, want %s", conn, px.Addr)
		}
	}
	waitHanded := func(t *testing.T, d curator, n int, why string) {
		t.Helper()
		waitFor(t, fmt.Sprintf("Curator's EnsembleTracker to process config %d (%s)", n, why), 60*time.Second,
			func() bool { return len(d.ConnectionStrings()) >= n })
	}

	d := curator{zktest.StartCurator(t)}
	d.must(t, "curator", px.Addr)
	t.Run("start", func(t *testing.T) {
		waitHanded(t, d, 1, "start")
		onlyProxy(t, d)
		showsProxyOnly(t, "Curator getConfig", strings.ReplaceAll(d.must(t, "config"), "|", "\n"))
	})

	t.Run("getConfig, chroot, kazoo and conf show the proxy", func(t *testing.T) {
		showsProxyOnly(t, "Java getConfig", d.must(t, "zkconfig", px.Addr))
		showsProxyOnly(t, "Java getConfig with a chroot", d.must(t, "zkconfig", px.Addr+"/chrooted"))
		showsProxyOnly(t, "Java getData", d.must(t, "zkget", px.Addr, configNode))
		// A chroot applies to getData: "/chrooted/zookeeper/config" is no node.
		if out, ok := d.do(t, "zkget", px.Addr+"/chrooted", configNode); ok || !strings.HasPrefix(out, "ERR NONODE") {
			t.Fatalf("getData of %s under a chroot: %q", configNode, out)
		}
		kazoo := zktest.Python(t, `
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1]); zk.start(timeout=20)
data, stat = zk.get('/zookeeper/config')
sys.stdout.write(data.decode())
zk.stop()
`, px.Addr)
		showsProxyOnly(t, "kazoo get", kazoo)
		conf, err := zktest.FourLetter(px.Addr, "conf")
		if err != nil {
			t.Fatal(err)
		}
		showsProxyOnly(t, "conf on the proxy port", conf)
		if n := counter(t, px.m.configRewrites); n < 4 {
			t.Errorf("config_rewrites_total = %v after Curator's, two getConfig, a getData and kazoo's reads", n)
		}
		if c := memberConf(t, ens.Members[0]); len(c.Members) != 3 {
			t.Fatalf("a member's own conf lists %d members: %+v", len(c.Members), c.Members)
		}
	})

	sessionMember := func(t *testing.T) (int64, *zktest.Server) {
		t.Helper()
		id, err := strconv.ParseUint(d.must(t, "session"), 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		var member string
		waitFor(t, "Curator's session on a member", 30*time.Second, func() bool {
			for _, s := range px.Sessions() {
				if uint64(s.ID()) == id && s.Info().Member != "" {
					member = s.Info().Member
					return true
				}
			}
			return false
		})
		for _, m := range ens.Members {
			if m.ClientAddr() == member {
				return int64(id), m
			}
		}
		t.Fatalf("session on unknown member %s", member)
		return 0, nil
	}

	t.Run("member restart", func(t *testing.T) {
		_, m := sessionMember(t)
		if err := m.Restart(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := ens.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		d.must(t, "check")
		onlyProxy(t, d)
	})

	// reconfigOnMembers runs a reconfig directly on a member (never through
	// the proxy) and waits until every serving member reports want members.
	// A ConnectionLoss leaves the outcome unknown (the leader may drop its
	// clients while the new config commits): the members' conf tells.
	reconfigOnMembers := func(t *testing.T, joining, leaving string, want int) {
		t.Helper()
		if out, ok := d.do(t, "adminreconfig", ens.Members[0].ClientAddr(), joining, leaving); !ok && !strings.HasPrefix(out, "ERR CONNECTIONLOSS") {
			t.Fatalf("reconfig on a member: %s", out)
		}
		waitFor(t, fmt.Sprintf("members to report %d members", want), 60*time.Second, func() bool {
			out, err := ens.Members[0].FourLetter("conf")
			if err != nil {
				return false
			}
			c, err := fourlw.ParseConf(out)
			return err == nil && len(c.Members) == want
		})
	}
	t.Run("config changes on the members", func(t *testing.T) {
		before := memberConf(t, ens.Members[0]).Version
		n := len(d.ConnectionStrings())
		reconfigOnMembers(t, "-", "3", 2)
		waitHanded(t, d, n+1, "server 3 removed")
		onlyProxy(t, d)
		m3 := ens.Member(3)
		reconfigOnMembers(t, fmt.Sprintf("server.3=%s:%d:%d:participant;%s", m3.IP, zktest.QuorumPort, zktest.ElectionPort, m3.ClientAddr()), "-", 3)
		waitHanded(t, d, n+2, "server 3 back")
		onlyProxy(t, d)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := ens.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		after := memberConf(t, ens.Members[0])
		if after.Version == before || len(after.Members) != 3 {
			t.Fatalf("config version %s → %s, members %v", before, after.Version, after.Members)
		}
		config := strings.ReplaceAll(d.must(t, "config"), "|", "\n")
		showsProxyOnly(t, "Curator getConfig after the change", config)
		if !strings.Contains(config, "version="+after.Version) {
			t.Fatalf("rewritten config lost the new version %s: %q", after.Version, config)
		}
	})

	t.Run("reconfig through the proxy is refused", func(t *testing.T) {
		before := memberConf(t, ens.Members[0])
		out, ok := d.do(t, "reconfig", "3")
		if ok || !strings.HasPrefix(out, "ERR RECONFIGDISABLED") {
			t.Fatalf("Curator reconfig through the proxy: %q", out)
		}
		if n := counter(t, px.m.reconfigRefused); n != 1 {
			t.Errorf("reconfig_refused_total = %v", n)
		}
		if !px.Logs.contains("reconfig refused", "xid=") {
			t.Error("the refusal was not logged")
		}
		d.must(t, "check") // the session goes on
		after := memberConf(t, ens.Members[0])
		if after.Version != before.Version || len(after.Members) != 3 {
			t.Fatalf("membership changed: %v %s → %v %s", before.Members, before.Version, after.Members, after.Version)
		}
	})

	t.Run("pipelined: a refused reconfig keeps its place, multiRead is rewritten", func(t *testing.T) {
		c, r, _ := rawSession(t, px.Addr, 10000)
		defer c.Close()
		leaving := "2"
		var frames []byte
		frames = appendRequestFrame(frames, jute.RequestHeader{Xid: 1, Op: jute.OpGetData}, &jute.GetDataRequest{Path: configNode})
		frames = appendRequestFrame(frames, jute.RequestHeader{Xid: 2, Op: jute.OpReconfig}, &jute.ReconfigRequest{LeavingServers: &leaving, CurConfigID: -1})
		frames = appendRequestFrame(frames, jute.RequestHeader{Xid: 3, Op: jute.OpMultiRead}, &jute.MultiRequest{Ops: []jute.MultiOp{
			jute.NewMultiOp(jute.OpGetData, &jute.GetDataRequest{Path: "/"}),
			jute.NewMultiOp(jute.OpGetData, &jute.GetDataRequest{Path: configNode}),
		}})
		frames = appendRequestFrame(frames, jute.RequestHeader{Xid: 4, Op: jute.OpExists}, &jute.ExistsRequest{Path: "/"})
		if _, err := c.Write(frames); err != nil { // one write: all four in flight at once
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for want := jute.Xid(1); want <= 4; want++ {
			f, err := r.Next()
			if err != nil {
				t.Fatalf("reply %d: %v", want, err)
			}
			var h jute.ReplyHeader
			if err := jute.Unmarshal(f.Payload()[:jute.ReplyHeaderSize], &h); err != nil || h.Xid != want {
				t.Fatalf("reply %d: header %+v %v (out of order?)", want, h, err)
			}
			body := f.Payload()[jute.ReplyHeaderSize:]
			switch want {
			case 1:
				var g jute.GetDataResponse
				if err := jute.Unmarshal(body, &g); err != nil {
					t.Fatal(err)
				}
				showsProxyOnly(t, "raw getData", string(g.Data))
				if int(g.Stat.DataLength) != len(g.Data) {
					t.Errorf("Stat.DataLength %d for %d bytes", g.Stat.DataLength, len(g.Data))
				}
			case 2:
				if h.Err != jute.ErrReconfigDisabled || len(body) != 0 {
					t.Fatalf("reconfig reply %+v with %d body bytes", h, len(body))
				}
			case 3:
				var m jute.MultiResponse
				if err := jute.Unmarshal(body, &m); err != nil || len(m.Results) != 2 {
					t.Fatalf("multiRead reply %+v: %v", m, err)
				}
				showsProxyOnly(t, "multiRead getData", string(m.Results[1].Response.(*jute.GetDataResponse).Data))
			case 4:
				if h.Err != jute.ErrOK {
					t.Fatalf("exists after the refusal: %v", h.Err)
				}
			}
		}
		if after := memberConf(t, ens.Members[0]); len(after.Members) != 3 {
			t.Fatalf("membership changed: %v", after.Members)
		}
	})

	t.Run("forced reconnect comes back through the proxy", func(t *testing.T) {
		id, m := sessionMember(t)
		if err := m.Kill(); err != nil {
			t.Fatal(err)
		}
		for _, s := range px.Sessions() {
			if int64(s.ID()) == id {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				s.Disconnect(ctx, "test: forced reconnect")
				cancel()
			}
		}
		waitFor(t, "Curator's session back through the proxy", 60*time.Second, func() bool {
			for _, s := range px.Sessions() {
				if int64(s.ID()) == id && s.Info().Member != "" {
					return true
				}
			}
			return false
		})
		d.must(t, "check")
		if direct := directSessions(t, ens, proxyIP); len(direct) > 0 {
			t.Fatalf("sessions on members not through the proxy: %v", direct)
		}
		onlyProxy(t, d)
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConfigPassThrough: with the rewrite off, a client reads exactly the
// bytes a member stores in /zookeeper/config, and conf is a member's.
func TestConfigPassThrough(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 3, zktest.WithClientAddrInServerLines())
	members := strings.Split(ens.ConnectString(), ",")
	px := startProxy(t, members, func(c *Config) { c.PassConfigThrough = true })
	viaProxy, _ := connectGo(t, []string{px.Addr}, 10*time.Second)
	direct, _ := connectGo(t, members[:1], 10*time.Second)
	got, gotStat, err := viaProxy.Get(configNode)
	if err != nil {
		t.Fatal(err)
	}
	want, wantStat, err := direct.Get(configNode)
	if err != nil {
		t.Fatal(err)
	}
	// Each member stamps the node's mtime itself when it loads its config,
	// so only the data and the rest of the Stat are compared.
	gotStat.Mtime, wantStat.Mtime = 0, 0
	if string(got) != string(want) || *gotStat != *wantStat {
		t.Fatalf("through the proxy %q %+v, direct %q %+v", got, gotStat, want, wantStat)
	}
	for _, ip := range ens.IPs() {
		if !strings.Contains(string(got), ip) {
			t.Fatalf("passed-through config lacks member %s: %q", ip, got)
		}
	}
	conf, err := zktest.FourLetter(px.Addr, "conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conf, "dataDir=") || !strings.Contains(conf, members[0]) && !strings.Contains(conf, ens.IPs()[0]) {
		t.Fatalf("conf with pass-config-through is not a member's: %q", conf)
	}
}
