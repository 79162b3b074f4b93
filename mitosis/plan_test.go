package mitosis

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden plan files in testdata/golden")

// capturedSource builds the Source from the conf and srvr answers captured
// from a real 3.8 ensemble (TestCaptureSourceConf).
func capturedSource(t *testing.T, kind string) Source {
	t.Helper()
	var answers []Answer
	for id := 1; id <= 3; id++ {
		read := func(cmd string) string {
			b, err := os.ReadFile(filepath.Join("testdata", "capture", kind+"-"+cmd+"-"+string(rune('0'+id))+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		answers = append(answers, Answer{Addr: "10.0.1." + string(rune('0'+id)) + ":2181", Conf: read("conf"), Srvr: read("srvr")})
	}
	src, err := SourceFromAnswers(answers)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func destination(t *testing.T, specs ...string) []Member {
	t.Helper()
	var out []Member
	for _, s := range specs {
		m, err := ParseMember(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func tlsTemplate(t *testing.T) *ZooCfg {
	t.Helper()
	b, err := os.ReadFile("testdata/tls-zoo.cfg")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseZooCfg(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestPlanGolden compares every generated file with testdata/golden
// (go test -run TestPlanGolden ./mitosis -update rewrites them).
func TestPlanGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		spec func() Spec
	}{
		{"plain", func() Spec {
			return Spec{Source: capturedSource(t, "plain"), Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888"), Dir: "/srv/mitosis"}
		}},
		{"dormant", func() Spec {
			return Spec{Source: capturedSource(t, "plain"), Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888", "6=10.0.2.6:2888:3888;2182"),
				Dormant: []int{6}, DestinationDataDir: "/data/zookeeper", Dir: "/srv/mitosis"}
		}},
		{"tls", func() Spec {
			// No --dormant: Build picks 6, the highest id.
			return Spec{Source: capturedSource(t, "tls"), Template: tlsTemplate(t),
				Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888", "6=10.0.2.6:2888:3888"), Dir: "/srv/mitosis", Chain: "ZK-SPLIT"}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Build(c.spec())
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join("testdata", "golden", c.name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				for name, b := range p.Files {
					if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			var onDisk []string
			err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(dir, path)
					onDisk = append(onDisk, filepath.ToSlash(rel))
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			var generated []string
			for name, b := range p.Files {
				generated = append(generated, name)
				want, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Errorf("%s: not in the golden files (run with -update): %v", name, err)
					continue
				}
				if string(want) != string(b) {
					t.Errorf("%s differs from the golden file (run with -update and review the diff):\n%s", name, b)
				}
			}
			slices.Sort(generated)
			slices.Sort(onDisk)
			if !slices.Equal(generated, onDisk) {
				t.Errorf("generated files %v, golden files %v", generated, onDisk)
			}
		})
	}
}

// TestPlanKeepsSettings: every non-membership setting of the source reaches
// every generated zoo.cfg, and each file's membership is the planned one.
func TestPlanKeepsSettings(t *testing.T) {
	tmpl := tlsTemplate(t)
	p, err := Build(Spec{Source: capturedSource(t, "tls"), Template: tmpl,
		Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888", "6=10.0.2.6:2888:3888")})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range p.Files {
		if !strings.HasSuffix(filepath.Dir(name), "joint") && !strings.HasPrefix(name, "destination/") && !strings.HasPrefix(name, "source/") {
			continue
		}
		cfg, err := ParseZooCfg(string(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, s := range tmpl.Lines {
			if membershipKey(s.Key) || perHostKey(s.Key) || s.Key == "dataDir" {
				continue
			}
			if v, ok := cfg.Get(s.Key); !ok || v != s.Value {
				t.Errorf("%s: %s=%q, want %q as in the source", name, s.Key, v, s.Value)
			}
		}
		var servers []string
		for _, s := range cfg.Lines {
			if strings.HasPrefix(s.Key, "server.") {
				servers = append(servers, strings.TrimPrefix(s.Key, "server."))
			}
		}
		want := map[string]string{"joint": "1,2,3,4,5", "destination": "4,5,6", "source": "1,2,3"}[filepath.Dir(name)]
		if got := strings.Join(servers, ","); got != want {
			t.Errorf("%s: members %s, want %s", name, got, want)
		}
		id := name[strings.LastIndexByte(name, '.')+1:]
		if v, _ := cfg.Get("secureClientPortAddress"); v != "10.0.1."+id && v != "10.0.2."+id {
			t.Errorf("%s: secureClientPortAddress=%s, want the node's own address", name, v)
		}
	}
}

// TestPlanRefuses: what Build cannot plan is refused with the reason.
func TestPlanRefuses(t *testing.T) {
	plain := capturedSource(t, "plain")
	reconfig := tlsTemplate(t)
	reconfig.Lines = append(reconfig.Lines, Setting{"reconfigEnabled", "true"})
	for _, c := range []struct {
		name string
		spec Spec
		want string
	}{
		{"id clash", Spec{Source: plain, Destination: destination(t, "3=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888")}, "server id 3 is both source member zk3"},
		{"address clash", Spec{Source: plain, Destination: destination(t, "4=10.0.1.2:2888:3888", "5=10.0.2.5:2888:3888")}, "address 10.0.1.2:2888 is used by both"},
		{"too many joined", Spec{Source: plain, Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888", "6=10.0.2.6:2888:3888"), Dormant: []int{}}, ""},
		{"empty majority", Spec{Source: plain, Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888", "6=10.0.2.6:2888:3888"), Dormant: []int{5, 6}}, "must be a majority of the destination"},
		{"unknown dormant", Spec{Source: plain, Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888"), Dormant: []int{9}}, "dormant member 9 is not a destination member"},
		{"reconfig", Spec{Source: capturedSource(t, "tls"), Template: reconfig, Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888")}, "reconfigEnabled=true"},
		{"tls unseen", Spec{Source: capturedSource(t, "tls"), Destination: destination(t, "4=10.0.2.4:2888:3888", "5=10.0.2.5:2888:3888")}, "pass the source's zoo.cfg"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(c.spec)
			if c.want == "" {
				if err != nil {
					t.Fatalf("automatic dormant choice: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Build error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestSourceRefuses: a source that is not one healthy static quorum.
func TestSourceRefuses(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "capture", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	conf1, conf2, conf3 := read("plain-conf-1.txt"), read("plain-conf-2.txt"), read("plain-conf-3.txt")
	follower, leader := read("plain-srvr-1.txt"), read("plain-srvr-3.txt")
	for _, c := range []struct {
		name    string
		answers []Answer
		want    string
	}{
		{"member missing", []Answer{{Addr: "a", Conf: conf1, Srvr: follower}, {Addr: "b", Conf: conf3, Srvr: leader}}, "server.2=10.0.1.2:2888:3888:participant is a member but was not given"},
		{"no leader", []Answer{{Addr: "a", Conf: conf1, Srvr: follower}, {Addr: "b", Conf: conf2, Srvr: follower}, {Addr: "c", Conf: conf3, Srvr: follower}}, "no member is leading"},
		{"reconfig", []Answer{{Addr: "a", Conf: strings.Replace(conf1, "version=0", "version=100000003", 1), Srvr: follower}, {Addr: "b", Conf: conf2, Srvr: follower}, {Addr: "c", Conf: conf3, Srvr: leader}}, "dynamic reconfiguration"},
		{"looking", []Answer{{Addr: "a", Conf: conf1, Srvr: strings.Replace(follower, "Mode: follower", "Mode: standalone", 1)}, {Addr: "b", Conf: conf2, Srvr: follower}, {Addr: "c", Conf: conf3, Srvr: leader}}, `a is in mode "standalone"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := SourceFromAnswers(c.answers)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
