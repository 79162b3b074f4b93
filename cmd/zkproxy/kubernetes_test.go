package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The Kubernetes manifests in deploy/kubernetes are checked against the
// configuration zkproxy really loads: zkproxy.yaml (the ConfigMap's file)
// goes through loadServeConfig with the environment the StatefulSet and the
// image give the container, and every port, probe and reference of the
// manifests is compared with the result and with the serve flags' defaults.
// The checks live here, beside TestSampleConfig, because the loader and the
// defaults are this package's.

// kubernetesDir is deploy/kubernetes, seen from cmd/zkproxy.
var kubernetesDir = filepath.Join("..", "..", "deploy", "kubernetes")

// podNameLabel is the label the StatefulSet controller puts on each pod,
// naming it (<statefulset>-<ordinal>); per-replica Services select on it.
const podNameLabel = "statefulset.kubernetes.io/pod-name"

// testAdminToken stands in for the Secret's admin-token, which is never in
// the repository.
const testAdminToken = "kubernetes-test-token"

// secretStandIns are the values the check gives the container for the
// Secret's keys, in the form zkproxy expects of each.
var secretStandIns = map[string]string{
	"admin-token": testAdminToken,
	"fleet-auth":  "kubernetes-test:password", // user:password
}

// TestKubernetesManifests: the manifests as committed pass every check.
func TestKubernetesManifests(t *testing.T) {
	for _, p := range kubernetesProblems(t, kubernetesDir) {
		t.Error(p)
	}
}

// TestKubernetesManifestsCheckFails: each check fails on a copy of the
// manifests broken in the one way it looks for, so a check that stopped
// looking would show here.
func TestKubernetesManifestsCheckFails(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"admin port", "statefulset.yaml", "containerPort: 9181", "containerPort: 9182", "container port admin is 9182, admin-listen"},
		{"client port", "statefulset.yaml", "containerPort: 2181", "containerPort: 2182", "container port client is 2182, listen"},
		{"readiness path", "statefulset.yaml", "path: /readyz", "path: /ready", "readinessProbe: GET /ready, want /readyz"},
		{"liveness path", "statefulset.yaml", "path: /healthz\n              port: admin\n            periodSeconds: 10", "path: /metrics\n              port: admin\n            periodSeconds: 10", "livenessProbe: GET /metrics, want /healthz"},
		{"readiness port", "statefulset.yaml", "path: /readyz\n              port: admin", "path: /readyz\n              port: client", "readinessProbe: port client (2181) is not the admin port 9181"},
		{"no readiness probe", "statefulset.yaml", "          readinessProbe:\n", "          readinessProbeOff:\n", "no readinessProbe"},
		{"unknown config key", "zkproxy.yaml", "fleet: kafka-main\n", "fleet: kafka-main\nfleet-stale: 10s\n", "fleet-stale: unknown key"},
		{"bad config value", "zkproxy.yaml", "log-format: json", "log-format: xml", "log-format: must be text or json"},
		{"admin on loopback", "zkproxy.yaml", `admin-listen: ":9181"`, `admin-listen: "127.0.0.1:9181"`, "loopback: the kubelet's probes"},
		{"secret key", "statefulset.yaml", "key: admin-token", "key: admin-tokn", `secret key "admin-tokn" of zkproxy-admin`},
		{"secret name", "statefulset.yaml", "name: zkproxy-admin\n                  key: admin-token", "name: zkproxy-secret\n                  key: admin-token", "no secretGenerator zkproxy-secret"},
		{"config map", "statefulset.yaml", "name: zkproxy-config", "name: zkproxy-cfg", "no configMapGenerator zkproxy-cfg"},
		{"config path", "statefulset.yaml", "value: /etc/zkproxy/zkproxy.yaml", "value: /etc/zkproxy.yaml", "ZKPROXY_CONFIG is /etc/zkproxy.yaml"},
		{"replicas", "statefulset.yaml", "replicas: 3", "replicas: 2", "replicas: 2, want 3"},
		{"volume claim", "statefulset.yaml", "  minReadySeconds: 10\n", "  minReadySeconds: 10\n  volumeClaimTemplates: [{metadata: {name: data}}]\n", "volumeClaimTemplates"},
		{"persistent volume", "statefulset.yaml", "emptyDir:\n            sizeLimit: 64Mi", "persistentVolumeClaim:\n            claimName: zkproxy-data", "data-dir /var/lib/zkproxy is not on an emptyDir"},
		{"claim object", "pdb.yaml", "maxUnavailable: 1\n", "maxUnavailable: 1\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\n", "PersistentVolumeClaim data"},
		{"grace period", "statefulset.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds 30s leaves no room"},
		{"service links", "statefulset.yaml", "enableServiceLinks: false", "enableServiceLinks: true", "enableServiceLinks"},
		{"writable root", "statefulset.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"root", "statefulset.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"},
		{"pdb budget", "pdb.yaml", "maxUnavailable: 1", "maxUnavailable: 2", "maxUnavailable 2, want 1"},
		{"pdb selector", "pdb.yaml", "    matchLabels:\n      app.kubernetes.io/name: zkproxy", "    matchLabels:\n      app.kubernetes.io/name: zookeeper", "PodDisruptionBudget zkproxy: selector"},
		{"replica service", "services.yaml", podNameLabel + ": zkproxy-2", podNameLabel + ": zkproxy-1", "no Service selects zkproxy-2 alone"},
		{"service selector", "services.yaml", "    app.kubernetes.io/instance: kafka-main\n    " + podNameLabel, "    app.kubernetes.io/instance: kafka-other\n    " + podNameLabel, "Service zkproxy-0: selector"},
		{"service port", "services.yaml", "port: 2181", "port: 2182", "Service zkproxy: port client is 2182"},
		{"service target", "services.yaml", "targetPort: admin", "targetPort: metrics", `Service zkproxy: targetPort "metrics"`},
		{"headless", "services.yaml", "  clusterIP: None\n", "", "no headless Service zkproxy"},
		{"advertise", "zkproxy.yaml", "zkproxy-1.kafka.svc:2181", "zkproxy-1.kafka:2181", "advertise"},
		{"namespace", "kustomization.yaml", "namespace: kafka", "namespace: brokers", "advertise"},
		{"forgotten resource", "kustomization.yaml", "  - pdb.yaml\n", "", "pdb.yaml is neither a resource"},
		{"committed secret", ".gitignore", "/admin-token\n", "", "admin-token is not in deploy/kubernetes/.gitignore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyKubernetesDir(t)
			path := filepath.Join(dir, tc.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(tc.old)) {
				t.Fatalf("%s no longer contains %q: update this case", tc.file, tc.old)
			}
			writeFile(t, path, strings.Replace(string(b), tc.old, tc.new, 1))
			problems := kubernetesProblems(t, dir)
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("broken %s passed without %q; problems:\n  %s", tc.file, tc.want, strings.Join(problems, "\n  "))
		})
	}
}

// TestKubernetesKustomizeRenders renders the kustomization with kubectl's
// built-in kustomize (offline, no cluster) and checks that the generated
// ConfigMap and Secret, whose names carry a content hash, are the ones the
// StatefulSet refers to. No offline schema validator (kubeconform) is
// packaged for Debian, so field names are checked by the parse above only
// as far as the checks read them.
func TestKubernetesKustomizeRenders(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: the kustomization is not rendered (TestKubernetesManifests still checks the files)")
	}
	dir := copyKubernetesDir(t)
	var kust k8sKustomization
	if b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml")); err != nil {
		t.Fatal(err)
	} else if err := yaml.Unmarshal(b, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.String())
	}
	objs, err := decodeK8sObjects(&out)
	if err != nil {
		t.Fatalf("rendered manifests: %v", err)
	}
	names := map[string]string{} // kind → generated name
	var sts *k8sStatefulSet
	for _, o := range objs {
		if o.Metadata.Namespace != kust.Namespace {
			t.Errorf("%s %s: namespace %q, want the kustomization's %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace, kust.Namespace)
		}
		switch o.Kind {
		case "ConfigMap", "Secret":
			names[o.Kind] = o.Metadata.Name
		case "StatefulSet":
			sts = &k8sStatefulSet{}
			if err := o.Spec.Decode(sts); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sts == nil || !strings.HasPrefix(names["ConfigMap"], "zkproxy-config-") || !strings.HasPrefix(names["Secret"], "zkproxy-admin-") {
		t.Fatalf("rendered: StatefulSet %v, generated %v", sts != nil, names)
	}
	pod := sts.Template.Spec
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name != names["ConfigMap"] {
			t.Errorf("volume %s mounts ConfigMap %s, generated %s", v.Name, v.ConfigMap.Name, names["ConfigMap"])
		}
	}
	for _, c := range pod.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != names["Secret"] {
				t.Errorf("%s reads Secret %s, generated %s", e.Name, e.ValueFrom.SecretKeyRef.Name, names["Secret"])
			}
		}
	}
	for _, img := range kust.Images {
		want := cmp.Or(img.NewName, img.Name) + ":" + cmp.Or(img.NewTag, "latest")
		if got := pod.Containers[0].Image; got != want {
			t.Errorf("image %q, want the kustomization's %q", got, want)
		}
	}
}

// copyKubernetesDir copies deploy/kubernetes into a temporary directory,
// with a stand-in admin-token as an operator would write it.
func copyKubernetesDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(kubernetesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == "admin-token" || e.Name() == "fleet-auth" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(kubernetesDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, e.Name()), string(b))
	}
	writeFile(t, filepath.Join(dir, "admin-token"), testAdminToken+"\n")
	return dir
}

// The parts of the Kubernetes objects the checks read. Unknown fields are
// ignored: these are not a schema.
type (
	k8sObject struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name      string            `yaml:"name"`
			Namespace string            `yaml:"namespace"`
			Labels    map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec yaml.Node `yaml:"spec"`
	}
	k8sSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	k8sStatefulSet struct {
		Replicas             *int        `yaml:"replicas"`
		ServiceName          string      `yaml:"serviceName"`
		Selector             k8sSelector `yaml:"selector"`
		VolumeClaimTemplates []any       `yaml:"volumeClaimTemplates"`
		Template             struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	}
	k8sPodSpec struct {
		EnableServiceLinks            *bool              `yaml:"enableServiceLinks"`
		TerminationGracePeriodSeconds *int               `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               k8sSecurityContext `yaml:"securityContext"`
		Containers                    []k8sContainer     `yaml:"containers"`
		Volumes                       []k8sVolume        `yaml:"volumes"`
	}
	k8sSecurityContext struct {
		RunAsNonRoot           *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem *bool `yaml:"readOnlyRootFilesystem"`
	}
	k8sContainer struct {
		Name  string `yaml:"name"`
		Image string `yaml:"image"`
		Env   []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name     string `yaml:"name"`
					Key      string `yaml:"key"`
					Optional bool   `yaml:"optional"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		StartupProbe    *k8sProbe          `yaml:"startupProbe"`
		LivenessProbe   *k8sProbe          `yaml:"livenessProbe"`
		ReadinessProbe  *k8sProbe          `yaml:"readinessProbe"`
		SecurityContext k8sSecurityContext `yaml:"securityContext"`
		VolumeMounts    []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	k8sProbe struct {
		HTTPGet *struct {
			Path   string `yaml:"path"`
			Port   any    `yaml:"port"` // a number or a port name
			Scheme string `yaml:"scheme"`
		} `yaml:"httpGet"`
	}
	k8sVolume struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name  string `yaml:"name"`
			Items []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"configMap"`
		EmptyDir any `yaml:"emptyDir"`
	}
	k8sService struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	k8sPDB struct {
		MaxUnavailable any         `yaml:"maxUnavailable"`
		MinAvailable   any         `yaml:"minAvailable"`
		Selector       k8sSelector `yaml:"selector"`
	}
	k8sKustomization struct {
		Namespace          string         `yaml:"namespace"`
		Resources          []string       `yaml:"resources"`
		ConfigMapGenerator []k8sGenerator `yaml:"configMapGenerator"`
		SecretGenerator    []k8sGenerator `yaml:"secretGenerator"`
		Images             []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	k8sGenerator struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	}
)

// keys maps each key of a generated ConfigMap or Secret to its file: a
// files entry is "key=path" or "path" (key: the file's base name).
func (g k8sGenerator) keys() map[string]string {
	out := map[string]string{}
	for _, f := range g.Files {
		if k, path, ok := strings.Cut(f, "="); ok {
			out[k] = path
		} else {
			out[filepath.Base(f)] = f
		}
	}
	return out
}

func findGenerator(gens []k8sGenerator, name string) (k8sGenerator, bool) {
	for _, g := range gens {
		if g.Name == name {
			return g, true
		}
	}
	return k8sGenerator{}, false
}

// decodeK8sObjects reads every document of a multi-document YAML stream.
func decodeK8sObjects(r io.Reader) ([]k8sObject, error) {
	dec := yaml.NewDecoder(r)
	var objs []k8sObject
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
}

// kubernetesProblems checks the manifests in dir (a copy of
// deploy/kubernetes) and returns every problem found, each naming the object
// or key it is about.
func kubernetesProblems(t *testing.T, dir string) []string {
	t.Helper()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	var kust k8sKustomization
	if b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml")); err != nil {
		t.Fatal(err)
	} else if err := yaml.Unmarshal(b, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	objs := kustomizationObjects(t, dir, kust, bad)

	var (
		sts      *k8sStatefulSet
		stsName  string
		services = map[string]k8sService{}
		svcOrder []string
		pdbs     = map[string]k8sPDB{}
	)
	for _, o := range objs {
		var err error
		switch o.Kind {
		case "StatefulSet":
			if sts != nil {
				bad("more than one StatefulSet")
			}
			sts, stsName = &k8sStatefulSet{}, o.Metadata.Name
			err = o.Spec.Decode(sts)
		case "Service":
			var s k8sService
			err = o.Spec.Decode(&s)
			services[o.Metadata.Name] = s
			svcOrder = append(svcOrder, o.Metadata.Name)
		case "PodDisruptionBudget":
			var p k8sPDB
			err = o.Spec.Decode(&p)
			pdbs[o.Metadata.Name] = p
		case "PersistentVolumeClaim", "PersistentVolume":
			bad("%s %s: the fleet state in ZooKeeper replaces persistent storage", o.Kind, o.Metadata.Name)
		}
		if err != nil {
			bad("%s %s: %v", o.Kind, o.Metadata.Name, err)
		}
	}
	if sts == nil {
		bad("no StatefulSet")
		return problems
	}
	if sts.Replicas == nil || *sts.Replicas != 3 {
		bad("StatefulSet %s: replicas: %v, want 3", stsName, deref(sts.Replicas))
	}
	replicas := deref(sts.Replicas)
	if len(sts.VolumeClaimTemplates) > 0 {
		bad("StatefulSet %s: volumeClaimTemplates: no persistent volume is needed (the fleet state is in ZooKeeper)", stsName)
	}
	podLabels := sts.Template.Metadata.Labels
	if !selects(sts.Selector.MatchLabels, podLabels, "", 0) {
		bad("StatefulSet %s: selector %v does not match its pod labels %v", stsName, sts.Selector.MatchLabels, podLabels)
	}
	pod := sts.Template.Spec
	if len(pod.Containers) != 1 {
		bad("StatefulSet %s: %d containers, want 1", stsName, len(pod.Containers))
		return problems
	}
	c := pod.Containers[0]

	cfg, ok := containerConfig(t, dir, kust, pod, c, bad)
	if !ok {
		return problems
	}

	// Ports: the container's named ports are the ones zkproxy listens on,
	// which are the serve defaults (the brokers' connect string and every
	// tool assume 2181 and the admin default).
	flags := serveFlags()
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, lp := range []struct{ name, key, addr string }{
		{"client", keyListen, cfg.Listen},
		{"admin", keyAdminListen, cfg.AdminListen},
	} {
		def := portOf(flags.Lookup(lp.key).DefValue)
		if got := portOf(lp.addr); ports[lp.name] != got || got != def {
			bad("container port %s is %d, %s is %q, and its default port is %d: all three must agree", lp.name, ports[lp.name], lp.key, lp.addr, def)
		}
	}
	if isLoopbackListen(cfg.AdminListen) {
		bad("admin-listen %q is loopback: the kubelet's probes come over the pod's IP", cfg.AdminListen)
	}

	// Probes: liveness and startup ask /healthz, readiness /readyz, on the
	// admin port, over HTTPS exactly when the admin listener has TLS.
	scheme := "HTTP"
	if cfg.AdminTLS != nil {
		scheme = "HTTPS"
	}
	for _, pr := range []struct {
		name, path string
		probe      *k8sProbe
		required   bool
	}{
		{"readinessProbe", "/readyz", c.ReadinessProbe, true},
		{"livenessProbe", "/healthz", c.LivenessProbe, true},
		{"startupProbe", "/healthz", c.StartupProbe, false},
	} {
		switch {
		case pr.probe == nil && pr.required:
			bad("no %s", pr.name)
		case pr.probe == nil:
		case pr.probe.HTTPGet == nil:
			bad("%s: not an httpGet", pr.name)
		default:
			g := pr.probe.HTTPGet
			if g.Path != pr.path {
				bad("%s: GET %s, want %s", pr.name, g.Path, pr.path)
			}
			if p := resolvePort(g.Port, ports); p != ports["admin"] {
				bad("%s: port %v (%d) is not the admin port %d", pr.name, g.Port, p, ports["admin"])
			}
			if s := cmp.Or(strings.ToUpper(g.Scheme), "HTTP"); s != scheme {
				bad("%s: scheme %s, the admin listener speaks %s", pr.name, s, scheme)
			}
		}
	}

	// Shutdown: the kubelet's SIGKILL must not cut the drain short.
	if grace := time.Duration(deref(pod.TerminationGracePeriodSeconds)) * time.Second; pod.TerminationGracePeriodSeconds == nil || grace < cfg.ShutdownTimeout+5*time.Second {
		bad("terminationGracePeriodSeconds %v leaves no room after shutdown-timeout %v for the drain to end", grace, cfg.ShutdownTimeout)
	}

	// data-dir is on an emptyDir: the phase it held is the fleet state now.
	volumes := map[string]k8sVolume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	onEmptyDir := false
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == filepath.Clean(cfg.DataDir) {
			onEmptyDir = volumes[m.Name].EmptyDir != nil
		}
	}
	if !onEmptyDir {
		bad("data-dir %s is not on an emptyDir volume (with the fleet state in ZooKeeper nothing needs to survive the pod)", cfg.DataDir)
	}

	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		bad("enableServiceLinks must be false: Service environment variables (ZKPROXY_0_SERVICE_HOST, ...) share zkproxy's ZKPROXY_ prefix")
	}
	if !isTrue(c.SecurityContext.RunAsNonRoot) && !isTrue(pod.SecurityContext.RunAsNonRoot) {
		bad("runAsNonRoot is not set")
	}
	if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
		bad("readOnlyRootFilesystem is not set")
	}

	// Services: a headless one for the pods' names, and one per replica
	// for the brokers' connect string; every selector selects these pods.
	if s, ok := services[sts.ServiceName]; !ok || s.ClusterIP != "None" {
		bad("no headless Service %s (the StatefulSet's serviceName)", sts.ServiceName)
	}
	perReplica := make([]string, replicas)
	for _, name := range svcOrder {
		s := services[name]
		if !selects(s.Selector, podLabels, stsName, replicas) {
			bad("Service %s: selector %v does not select the StatefulSet's pods %v", name, s.Selector, podLabels)
		}
		if podName, ok := s.Selector[podNameLabel]; ok {
			if i, err := strconv.Atoi(strings.TrimPrefix(podName, stsName+"-")); err == nil && i >= 0 && i < replicas {
				if perReplica[i] != "" {
					bad("Services %s and %s both select %s", perReplica[i], name, podName)
				}
				perReplica[i] = name
			}
		}
		for _, p := range s.Ports {
			target := resolvePort(p.TargetPort, ports)
			if p.TargetPort == nil {
				target = resolvePort(p.Port, ports)
			}
			switch {
			case target == 0:
				bad("Service %s: targetPort %q is no container port", name, fmt.Sprint(p.TargetPort))
			case p.Port != target:
				bad("Service %s: port %s is %d, the container's is %d", name, p.Name, p.Port, target)
			}
		}
	}
	var wantAdvertise []string
	for i, name := range perReplica {
		if name == "" {
			bad("no Service selects %s-%d alone: the brokers cannot list it", stsName, i)
			continue
		}
		wantAdvertise = append(wantAdvertise, net.JoinHostPort(name+"."+kust.Namespace+".svc", strconv.Itoa(ports["client"])))
	}
	if !slices.Equal(cfg.Proxy.Advertise, wantAdvertise) {
		bad("advertise %v, want every per-replica Service in namespace %s: %v", cfg.Proxy.Advertise, kust.Namespace, wantAdvertise)
	}

	// The PodDisruptionBudget lets one replica go at a time.
	if len(pdbs) != 1 {
		bad("%d PodDisruptionBudgets, want 1", len(pdbs))
	}
	for name, p := range pdbs {
		if fmt.Sprint(p.MaxUnavailable) != "1" || p.MinAvailable != nil {
			bad("PodDisruptionBudget %s: maxUnavailable %v, want 1 (and no minAvailable)", name, p.MaxUnavailable)
		}
		if !selects(p.Selector.MatchLabels, podLabels, "", 0) {
			bad("PodDisruptionBudget %s: selector %v does not select the StatefulSet's pods %v", name, p.Selector.MatchLabels, podLabels)
		}
	}
	return problems
}

// kustomizationObjects reads the kustomization's resources, checking that
// every YAML file in dir is a resource, a generator's input or the
// kustomization itself, and that secret inputs are never committed.
func kustomizationObjects(t *testing.T, dir string, kust k8sKustomization, bad func(string, ...any)) []k8sObject {
	t.Helper()
	used := map[string]bool{"kustomization.yaml": true}
	for _, g := range kust.ConfigMapGenerator {
		for _, f := range g.keys() {
			used[f] = true
		}
	}
	ignored, _ := os.ReadFile(filepath.Join(dir, ".gitignore"))
	for _, g := range kust.SecretGenerator {
		for _, f := range g.keys() {
			if !slices.Contains(strings.Split(string(ignored), "\n"), "/"+f) {
				bad("%s is not in deploy/kubernetes/.gitignore: a secret input must never be committed", f)
			}
		}
	}
	var objs []k8sObject
	for _, r := range kust.Resources {
		used[r] = true
		f, err := os.Open(filepath.Join(dir, r))
		if err != nil {
			bad("resource %s: %v", r, err)
			continue
		}
		o, err := decodeK8sObjects(f)
		f.Close()
		if err != nil {
			bad("resource %s: %v", r, err)
		}
		objs = append(objs, o...)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !used[filepath.Base(f)] {
			bad("%s is neither a resource nor a generator input of kustomization.yaml: kubectl apply -k would leave it out", filepath.Base(f))
		}
	}
	return objs
}

// containerConfig loads zkproxy.yaml through the real configuration loader
// with the environment the container gets: the image's ZKPROXY_* ENV
// (Dockerfile), then the StatefulSet's env, Secret values standing in for
// the real ones. It checks that ZKPROXY_CONFIG names the mounted ConfigMap
// file and that every Secret key the env needs is generated.
func containerConfig(t *testing.T, dir string, kust k8sKustomization, pod k8sPodSpec, c k8sContainer, bad func(string, ...any)) (serveConfig, bool) {
	t.Helper()
	env := dockerfileEnv(t)
	mounted := map[string]string{} // path in the container → file in dir
	volumes := map[string]k8sVolume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v := volumes[m.Name]
		if v.ConfigMap == nil {
			continue
		}
		gen, ok := findGenerator(kust.ConfigMapGenerator, v.ConfigMap.Name)
		if !ok {
			bad("volume %s: no configMapGenerator %s in kustomization.yaml", v.Name, v.ConfigMap.Name)
			continue
		}
		for _, it := range v.ConfigMap.Items {
			if file, ok := gen.keys()[it.Key]; ok {
				mounted[filepath.Join(m.MountPath, it.Path)] = filepath.Join(dir, file)
			} else {
				bad("volume %s: ConfigMap %s has no key %s", v.Name, v.ConfigMap.Name, it.Key)
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			gen, ok := findGenerator(kust.SecretGenerator, ref.Name)
			if !ok {
				bad("%s: no secretGenerator %s in kustomization.yaml", e.Name, ref.Name)
				continue
			}
			if _, ok := gen.keys()[ref.Key]; ok {
				env[e.Name] = cmp.Or(secretStandIns[ref.Key], "kubernetes-test-"+ref.Key)
			} else if !ref.Optional {
				bad("%s: secret key %q of %s is not generated (kustomization.yaml)", e.Name, ref.Key, ref.Name)
			}
		}
	}
	file, ok := mounted[env["ZKPROXY_CONFIG"]]
	if !ok {
		bad("ZKPROXY_CONFIG is %s, not a file mounted from the ConfigMap (%v)", env["ZKPROXY_CONFIG"], mounted)
		return serveConfig{}, false
	}
	env["ZKPROXY_CONFIG"] = file
	for k, v := range env {
		if strings.HasPrefix(k, envPrefix+"_") {
			t.Setenv(k, v)
		}
	}
	flags := serveFlags()
	v, err := newViper(flags)
	if err == nil {
		var cfg serveConfig
		if cfg, err = loadServeConfig(v, flags); err == nil {
			return cfg, true
		}
	}
	bad("zkproxy.yaml with the container's environment does not load: %v", err)
	return serveConfig{}, false
}

// dockerfileEnv returns the ZKPROXY_* variables the image sets (ENV lines of
// the Dockerfile): they apply under the StatefulSet's env.
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ENV ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, envPrefix+"_") {
				env[k] = v
			}
		}
	}
	return env
}

// selects reports whether selector, non-empty, selects pods labelled
// labels; a per-replica selector's pod name must be <sts>-<ordinal> with the
// ordinal below replicas.
func selects(selector, labels map[string]string, sts string, replicas int) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if k == podNameLabel && sts != "" {
			i, err := strconv.Atoi(strings.TrimPrefix(v, sts+"-"))
			if err != nil || !strings.HasPrefix(v, sts+"-") || i < 0 || i >= replicas {
				return false
			}
			continue
		}
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolvePort turns a port number or a container port name into a number;
// 0 when it is neither.
func resolvePort(p any, named map[string]int) int {
	switch p := p.(type) {
	case int:
		return p
	case string:
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
		return named[p]
	}
	return 0
}

// portOf is the port of a host:port address; 0 when it has none.
func portOf(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func isTrue(b *bool) bool { return b != nil && *b }
