package opstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestEveryAlertIsUnitTested: deploy/prometheus/alerts_test.yml, which
// `make rules` runs with promtool, evaluates every alert of alerts.yml at
// least once where it fires and once where it must stay silent, so a new
// alert comes with its tests.
func TestEveryAlertIsUnitTested(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	alerts := alertExprs(t, filepath.Join(dir, "alerts.yml"))
	b, err := os.ReadFile(filepath.Join(dir, "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	if len(tf.RuleFiles) != 1 || tf.RuleFiles[0] != "alerts.yml" {
		t.Errorf("alerts_test.yml tests %v, want alerts.yml", tf.RuleFiles)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, e := range tc.AlertRuleTest {
			if len(e.ExpAlerts) > 0 {
				fires[e.Alertname] = true
			} else {
				silent[e.Alertname] = true
			}
		}
	}
	names := map[string]bool{}
	for where := range alerts {
		// Keys are group/alert/expr and group/alert/annotations/...
		if parts := strings.Split(where, "/"); len(parts) >= 3 && parts[2] == "expr" {
			names[parts[1]] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("no alerts found in alerts.yml")
	}
	for _, name := range sortedKeys(names) {
		if !fires[name] {
			t.Errorf("alerts_test.yml never expects %s to fire", name)
		}
		if !silent[name] {
			t.Errorf("alerts_test.yml never expects %s to stay silent (exp_alerts: [])", name)
		}
		delete(fires, name)
		delete(silent, name)
	}
	for _, extra := range []map[string]bool{fires, silent} {
		for name := range extra {
			t.Errorf("alerts_test.yml tests %s, which alerts.yml does not define", name)
		}
	}
}
