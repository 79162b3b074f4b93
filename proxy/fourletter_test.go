package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkproxy/zkproxy/internal/testkit/zktest"
	"github.com/zkproxy/zkproxy/jute"
)

// zk38Words are the four-letter words ZooKeeper 3.8 knows
// (FourLetterCommands: the *Cmd constants registered in cmd2String).
var zk38Words = []string{
	"conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro",
	"mntr", "ruok", "srst", "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
}

// TestFourLetterWordsRevealNoSessionOrMember sends every word ZooKeeper 3.8
// knows to the proxy's client port, in front of a real member that allows
// them all (4lw.commands.whitelist=*), while a client holds a session with
// an ephemeral node and a watch — what dump, cons, wchc and wchp would list.
// In the default configuration no answer may carry the session id (from
// which the password derives) or the member's address. With every word
// allowed the same probe must find the id: the check is not vacuous.
func TestFourLetterWordsRevealNoSessionOrMember(t *testing.T) {
	zktest.RequireIntegration(t)
	server := zktest.Standalone(t)
	for _, w := range zk38Words {
		var p [4]byte
		copy(p[:], w)
		if _, ok := jute.FourLetterWord(p); !ok {
			t.Fatalf("jute does not know %q", w)
		}
	}
	leaks := func(answer string, id int64) []string {
		var found []string
		low := strings.ToLower(answer)
		if strings.Contains(low, fmt.Sprintf("%x", id)) {
			found = append(found, "session id")
		}
		if strings.Contains(answer, server.IP) {
			found = append(found, "member address "+server.IP)
		}
		// Host details: envi's host name and paths, conf's directories.
		for _, detail := range []string{"host.name=", "user.dir=", "dataDir="} {
			if strings.Contains(answer, detail) {
				found = append(found, "host detail "+detail)
			}
		}
		return found
	}
	probe := func(t *testing.T, px *testProxy) map[string]string {
		t.Helper()
		conn, _ := connectGo(t, []string{px.Addr}, 10*time.Second)
		if _, err := conn.Create("/fourlw-eph", []byte("x"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := conn.GetW("/fourlw-eph"); err != nil {
			t.Fatal(err)
		}
		answers := map[string]string{}
		for _, w := range zk38Words {
			out, err := zktest.FourLetter(px.Addr, w)
			if err != nil {
				t.Fatalf("%s through the proxy: %v", w, err)
			}
			answers[w] = out
		}
		id := conn.SessionID()
		for w, out := range answers {
			if found := leaks(out, id); len(found) > 0 {
				answers[w] = "LEAK " + strings.Join(found, ", ")
			}
		}
		conn.Close()
		waitFor(t, "the session to close", 10*time.Second, func() bool { return len(px.Sessions()) == 0 })
		return answers
	}

	t.Run("default", func(t *testing.T) {
		px := startProxy(t, []string{server.ClientAddr()})
		answers := probe(t, px)
		for _, w := range zk38Words {
			if strings.HasPrefix(answers[w], "LEAK") {
				t.Errorf("%s: %s", w, answers[w])
			}
		}
		for _, w := range []string{"dump", "envi", "cons", "wchc", "wchp", "crst", "srst", "stmk"} {
			if want := w + " is not executed because it is not in the whitelist.\n"; answers[w] != want {
				t.Errorf("%s = %q, want the whitelist refusal", w, answers[w])
			}
		}
		for w, want := range map[string]string{"ruok": "imok", "isro": "rw", "srvr": "Mode: proxy", "conf": "membership: \n",
			"wchs": "connections watching", "gtmk": "0"} {
			if !strings.Contains(answers[w], want) {
				t.Errorf("%s = %q, want it to hold %q", w, answers[w], want)
			}
		}
	})
	t.Run("every word allowed leaks, as it should", func(t *testing.T) {
		px := startProxy(t, []string{server.ClientAddr()}, func(c *Config) { c.FourLetterWords = []string{"*"}; c.PassConfigThrough = true })
		answers := probe(t, px)
		for _, w := range []string{"dump", "cons", "wchc", "wchp"} {
			if !strings.Contains(answers[w], "LEAK session id") {
				t.Errorf("%s with every word allowed shows no session id: the probe is blind", w)
			}
		}
		for _, w := range []string{"envi", "conf"} {
			if !strings.Contains(answers[w], "LEAK host detail") {
				t.Errorf("%s with every word allowed and the config passed through shows no host detail: %q", w, answers[w])
			}
		}
	})
}
