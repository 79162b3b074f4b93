package opstest

import (
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/cutover/proxyadapter"
	"github.com/zkproxy/zkproxy/fleet"
	"github.com/zkproxy/zkproxy/internal/certfile"
	"github.com/zkproxy/zkproxy/internal/memtrim"
	"github.com/zkproxy/zkproxy/proxy"
)

// recordingRegisterer registers with a real registry and remembers every
// collector, so the test can ask each one to Describe itself: a vector with
// no children yet has no samples to gather, but it has a Desc.
type recordingRegisterer struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// metricDesc is what a Desc says about one metric family.
type metricDesc struct {
	name        string
	labels      []string // variable labels, in declaration order
	constLabels []string // names of constant labels, sorted
}

// allLabels is every label name of the family, sorted.
func (d metricDesc) allLabels() []string {
	return slices.Sorted(slices.Values(append(slices.Clone(d.labels), d.constLabels...)))
}

// zkproxyRegistry registers a real proxy.Server and a real
// cutover.Controller (driving that proxy through the bridge, as serve wires
// them) on one registry, and returns it with every Desc, by name.
func zkproxyRegistry(t *testing.T) (*recordingRegisterer, map[string]metricDesc) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	rec := &recordingRegisterer{reg: prometheus.NewRegistry()}
	source := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	destination := []string{"127.0.0.1:4", "127.0.0.1:5", "127.0.0.1:6"}
	p, err := proxy.New(proxy.Config{Source: source, Destination: destination}, log, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctl, err := cutover.NewController(cutover.Config{
		Source: source, Destination: destination, Store: cutover.Store{Dir: t.TempDir()},
	}, proxyadapter.New(p, destination), log, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	certfile.NewMetrics(rec) // registered by cmd/zkproxy's serve
	fleet.NewMetrics(rec)    // registered by cmd/zkproxy's serve with fleet set
	memtrim.New(rec, log)    // registered by cmd/zkproxy's serve
	return rec, describe(t, rec.collectors)
}

var (
	descRE       = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), .*constLabels: \{(.*)\}, variableLabels: \{([^}]*)\}\}$`)
	constLabelRE = regexp.MustCompile(`(?:^|,)([a-zA-Z_][a-zA-Z0-9_]*)=`)
)

func describe(t *testing.T, collectors []prometheus.Collector) map[string]metricDesc {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	out := map[string]metricDesc{}
	for d := range ch {
		if err := d.Err(); err != nil {
			t.Errorf("invalid metric description %s: %v", d, err)
			continue
		}
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name from %s (client_golang changed Desc.String?)", d)
		}
		name, err := strconv.Unquote(m[1])
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		var labels []string
		if m[3] != "" {
			for _, l := range strings.Split(m[3], ",") {
				labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"))
			}
		}
		d := metricDesc{name: name, labels: labels}
		// A family can be split over collectors with a constant label each
		// (CounterFuncs per direction): its label set is the union.
		for _, c := range constLabelRE.FindAllStringSubmatch(m[2], -1) {
			d.constLabels = append(d.constLabels, c[1])
		}
		if prev, ok := out[name]; ok {
			d.constLabels = append(d.constLabels, prev.constLabels...)
		}
		slices.Sort(d.constLabels)
		d.constLabels = slices.Compact(d.constLabels)
		out[name] = d
	}
	return out
}

// materialize creates one child (label values "x") of every vector, so
// that gathering yields every family with its type.
func materialize(t *testing.T, collectors []prometheus.Collector, descs map[string]metricDesc) {
	t.Helper()
	for _, c := range collectors {
		for _, d := range describe(t, []prometheus.Collector{c}) {
			values := make([]string, len(d.labels))
			for i := range values {
				values[i] = "x"
			}
			switch v := c.(type) {
			case *prometheus.CounterVec:
				v.WithLabelValues(values...)
			case *prometheus.GaugeVec:
				v.WithLabelValues(values...)
			case *prometheus.HistogramVec:
				v.WithLabelValues(values...)
			case *prometheus.SummaryVec:
				v.WithLabelValues(values...)
			default:
				// A custom collector must yield its labelled series by
				// itself (the proxy's shardCollector does, at zero).
				if len(d.labels) > 0 && !collects(t, c, d.name) {
					t.Errorf("%s: collector %T with labels %v is not a known vector type and collects no such series", d.name, c, d.labels)
				}
			}
		}
	}
}

// collects reports whether c's Collect yields a series of family name.
func collects(t *testing.T, c prometheus.Collector, name string) bool {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	found := false
	for m := range ch {
		if f := descRE.FindStringSubmatch(m.Desc().String()); f != nil {
			if n, err := strconv.Unquote(f[1]); err == nil && n == name {
				found = true
			}
		}
	}
	return found
}

// metricTypes gathers the registry and returns each family's type
// ("COUNTER", "GAUGE", "HISTOGRAM", ...).
func metricTypes(t *testing.T, reg prometheus.Gatherer) map[string]string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetType().String()
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
func labelString(labels []string) string        { return fmt.Sprintf("{%s}", strings.Join(labels, ",")) }
