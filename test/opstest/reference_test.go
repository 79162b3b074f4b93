package opstest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateReference = flag.Bool("update", false, "rewrite docs/metrics.md from the registered metrics")

// metricsReferenceHeader opens docs/metrics.md; the table below it is
// generated from what a real proxy and cutover controller register.
const metricsReferenceHeader = `# Metrics reference

Every metric zkproxy serves on the admin listener's ` + "`/metrics`" + `, with its type, its labels and what it
means (the help text the process itself serves). All names start with ` + "`zkproxy_`" + `; no label ever carries a
session id or a znode path. The Grafana dashboard (deploy/grafana/zkproxy.json) and the alert rules
(deploy/prometheus/alerts.yml, unit-tested with promtool) are built on these; the runbook in the README says
which to watch at each stage.

Counters restart from zero when the process restarts (Prometheus' ` + "`rate`/`increase`" + ` handle that).

This file is generated: ` + "`go test ./test/opstest -run TestMetricsReference -update`" + ` rewrites it, and the
test fails when a registered metric is missing here or described differently.

| metric | type | labels | meaning |
|---|---|---|---|
`

// TestMetricsReference keeps docs/metrics.md equal to the registered
// metrics: a metric added, renamed, relabelled or re-described without its
// reference row fails here.
func TestMetricsReference(t *testing.T) {
	rec, descs := zkproxyRegistry(t)
	materialize(t, rec.collectors, descs)
	mfs, err := rec.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(metricsReferenceHeader)
	for _, mf := range mfs { // Gather sorts by name
		labels := "—"
		if d, ok := descs[mf.GetName()]; ok && len(d.allLabels()) > 0 {
			labels = "`" + strings.Join(d.allLabels(), "`, `") + "`"
		}
		help := strings.ReplaceAll(mf.GetHelp(), "|", `\|`)
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", mf.GetName(), strings.ToLower(mf.GetType().String()), labels, help)
	}
	path := filepath.Join(repoRoot(t), "docs", "metrics.md")
	if *updateReference {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./test/opstest -run TestMetricsReference -update)", err)
	}
	if string(have) != b.String() {
		haveLines, wantLines := strings.Split(string(have), "\n"), strings.Split(b.String(), "\n")
		for i := 0; i < max(len(haveLines), len(wantLines)); i++ {
			var h, w string
			if i < len(haveLines) {
				h = haveLines[i]
			}
			if i < len(wantLines) {
				w = wantLines[i]
			}
			if h != w {
				t.Fatalf("docs/metrics.md differs from the registered metrics at line %d:\n have: %s\n want: %s\n(regenerate: go test ./test/opstest -run TestMetricsReference -update)", i+1, h, w)
			}
		}
	}
}
