package deploy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const chartDir = "helm/woorelay"

// TestChartLints runs `helm lint --strict` on the chart, with its defaults and with a queue on
// NATS and a ServiceMonitor.
func TestChartLints(t *testing.T) {
	for name, vals := range map[string]map[string]any{"defaults": diskValues(), "nats": natsValues()} {
		l := action.NewLint()
		l.Strict = true
		res := l.Run([]string{chartDir}, vals)
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: helm lint: %s", name, m)
			}
		}
		for _, err := range res.Errors {
			t.Errorf("%s: helm lint: %v", name, err)
		}
	}
}

// diskValues are the defaults with the values that have none: a write key and the admin token.
func diskValues() map[string]any {
	return map[string]any{"secrets": map[string]any{"writeKeys": map[string]any{"website": "k1"}, "adminToken": "t"}}
}

// natsValues are the values of relays sharing a NATS JetStream queue, with mapping folders and
// a ServiceMonitor.
func natsValues() map[string]any {
	return map[string]any{
		"queue":          map[string]any{"urls": []any{"nats://nats-0.nats:4222", "nats://nats-1.nats:4222"}, "replicas": 3},
		"serviceMonitor": map[string]any{"enabled": true},
		"config": map[string]any{"sources": []any{
			map[string]any{"name": "website", "preset": "default", "settings": map[string]any{"project": "example.com"}, "mappings": []any{"video"}},
			map[string]any{"name": "back-end", "preset": "segment", "settings": map[string]any{"project": "example.com"}},
		}},
		"secrets":  map[string]any{"writeKeys": map[string]any{"website": "k1", "back-end": "k2"}, "adminToken": "t"},
		"mappings": map[string]any{"video": map[string]any{"video.yaml": string(videoMapping)}},
	}
}

// videoMapping is the repository's example mapping folder's file.
var videoMapping = func() []byte {
	b, err := os.ReadFile("../testdata/mappings_example/video.yaml")
	if err != nil {
		panic(err)
	}
	return b
}()

// rendered is a chart's manifests, by kind.
type rendered struct {
	objs []*unstructured.Unstructured
}

// helmTemplate runs `helm template relay` on the chart with vals, for Kubernetes 1.30 (the
// chart's lowest), and returns the manifests.
func helmTemplate(vals map[string]any) (string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return "", err
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = "relay", "default"
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

// render runs `helm template` on the chart with vals and decodes every manifest.
func render(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	manifest, err := helmTemplate(vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var r rendered
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("a rendered manifest is not YAML: %v\n%s", err, manifest)
		}
		if u.Object != nil {
			r.objs = append(r.objs, &u)
		}
	}
	return r
}

// get converts the object of kind whose name ends with nameSuffix into out; false if none.
func (r rendered) get(t *testing.T, kind, nameSuffix string, out any) bool {
	t.Helper()
	for _, u := range r.objs {
		if u.GetKind() == kind && strings.HasSuffix(u.GetName(), nameSuffix) {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
				t.Fatalf("%s %s does not match the Kubernetes API: %v", kind, u.GetName(), err)
			}
			return true
		}
	}
	return false
}

// kinds lists the kinds rendered.
func (r rendered) kinds() []string {
	var k []string
	for _, u := range r.objs {
		k = append(k, u.GetKind())
	}
	slices.Sort(k)
	return k
}

var (
	flagsOnce sync.Once
	flagNames map[string]bool
	flagsErr  error
	binary    string // the woorelay built by serveFlags
)

// serveFlags builds woorelay from this repository and returns the flags `woorelay serve -h`
// lists.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "woorelay-chart-")
		if err != nil {
			flagsErr = err
			return
		}
		bin := filepath.Join(dir, "woorelay")
		binary = bin
		if out, err := exec.Command("go", "build", "-C", "..", "-o", bin, "./cmd/woorelay").CombinedOutput(); err != nil {
			flagsErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "serve", "-h")
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			flagsErr = fmt.Errorf("woorelay serve -h: %v", err)
			return
		}
		flagNames = map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`).FindAllStringSubmatch(out.String(), -1) {
			flagNames[m[1]] = true
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	if len(flagNames) < 10 {
		t.Fatalf("woorelay serve -h lists %d flags; the test reads them wrong", len(flagNames))
	}
	return flagNames
}

// args parses the container's arguments: the command, then --flag=value pairs.
func args(t *testing.T, c corev1.Container) (string, map[string]string) {
	t.Helper()
	if len(c.Args) == 0 {
		t.Fatal("the container has no arguments")
	}
	flags := map[string]string{}
	for _, a := range c.Args[1:] {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q is not a --flag", a)
		}
		flags[name] = value
	}
	return c.Args[0], flags
}

// checkPod checks the pod template against the binary's flags: every argument and every
// WOORELAY_ variable is a flag of serve, the ports are the ones --listen and --admin-listen
// give, the probes ask /healthz and /readyz on the ingest port, the sources file and (for a
// disk queue) --data are mounted, and the grace period covers the preStop and the drain.
func checkPod(t *testing.T, p corev1.PodTemplateSpec, wantData bool) map[string]string {
	t.Helper()
	known := serveFlags(t)
	if len(p.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(p.Spec.Containers))
	}
	c := p.Spec.Containers[0]
	cmd, flags := args(t, c)
	if cmd != "serve" {
		t.Errorf("the container runs %q, want serve", cmd)
	}
	for f := range flags {
		if !known[f] {
			t.Errorf("argument --%s is not a flag of woorelay serve", f)
		}
	}
	for _, e := range c.Env {
		if f, ok := strings.CutPrefix(e.Name, "WOORELAY_"); ok && !strings.HasPrefix(f, "WRITE_KEY_") {
			if !known[strings.ToLower(strings.ReplaceAll(f, "_", "-"))] {
				t.Errorf("environment %s names no flag of woorelay serve", e.Name)
			}
		}
	}
	ports := map[string]int32{}
	for _, cp := range c.Ports {
		ports[cp.Name] = cp.ContainerPort
	}
	for name, flag := range map[string]string{"http": "listen", "admin": "admin-listen"} {
		if want := ":" + fmt.Sprint(ports[name]); flags[flag] != want {
			t.Errorf("--%s=%s, but the container port %q is %d", flag, flags[flag], name, ports[name])
		}
	}
	for name, pr := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := "/healthz"
		if name == "readiness" {
			want = "/readyz"
		}
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("no %s probe by HTTP", name)
			continue
		}
		if pr.HTTPGet.Path != want || pr.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe asks %s on port %s, want %s on http (--listen)", name, pr.HTTPGet.Path, pr.HTTPGet.Port.String(), want)
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	if dir := filepath.Dir(flags["config"]); mounts[dir] != "config" {
		t.Errorf("--config=%s, but %s is not the config volume's mount (mounts %v)", flags["config"], dir, mounts)
	}
	if wantData {
		if flags["data"] == "" || mounts[flags["data"]] != "data" {
			t.Errorf("--data=%q is not the data volume's mount (mounts %v)", flags["data"], mounts)
		}
	} else if _, ok := flags["data"]; ok {
		t.Error("relays on NATS are given --data")
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep: the pod would stop taking traffic before its load balancers notice")
	}
	drain, err := time.ParseDuration(flags["drain-timeout"])
	if err != nil {
		t.Fatalf("--drain-timeout=%q: %v", flags["drain-timeout"], err)
	}
	need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + drain
	if g := p.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %v does not cover the preStop and --drain-timeout (%v)", g, need)
	}
	if sc := p.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("the pod may run as root")
	}
	return flags
}

// TestChartStatefulSetOnDisk renders the defaults: a StatefulSet whose pods keep the disk
// queue on a volume claim, a Secret for the keys and token, a ConfigMap with the sources
// file, Services for ingest and admin, a PodDisruptionBudget.
func TestChartStatefulSetOnDisk(t *testing.T) {
	r := render(t, diskValues())
	var ss appsv1.StatefulSet
	if !r.get(t, "StatefulSet", "", &ss) {
		t.Fatalf("no StatefulSet; rendered %v", r.kinds())
	}
	if r.get(t, "Deployment", "", &appsv1.Deployment{}) {
		t.Error("a Deployment beside the StatefulSet")
	}
	checkPod(t, ss.Spec.Template, true)
	if len(ss.Spec.VolumeClaimTemplates) != 1 || ss.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("volume claims %v, want one named data", ss.Spec.VolumeClaimTemplates)
	}
	var cm corev1.ConfigMap
	if !r.get(t, "ConfigMap", "", &cm) || !strings.Contains(cm.Data["woorelay.yaml"], "write_key_env: WOORELAY_WRITE_KEY_WEBSITE") {
		t.Errorf("the ConfigMap's sources file does not read the write key from the environment:\n%s", cm.Data["woorelay.yaml"])
	}
	var sec corev1.Secret
	if !r.get(t, "Secret", "", &sec) || sec.StringData["admin-token"] == "" || sec.StringData["write-key-website"] == "" {
		t.Errorf("the Secret lacks the admin token or the write key: %v", sec.StringData)
	}
	var pdb policyv1.PodDisruptionBudget
	if !r.get(t, "PodDisruptionBudget", "", &pdb) {
		t.Error("no PodDisruptionBudget")
	}
	if r.get(t, "ServiceMonitor", "", &unstructured.Unstructured{}) {
		t.Error("a ServiceMonitor although serviceMonitor.enabled is false")
	}
	var svc corev1.Service
	if !r.get(t, "Service", "woorelay", &svc) || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("the ingest Service does not target the http port: %+v", svc.Spec.Ports)
	}
}

// TestChartRequiresSecrets: without a write key or an admin token, rendering fails and says
// which value is missing.
func TestChartRequiresSecrets(t *testing.T) {
	if _, err := helmTemplate(nil); err == nil || !strings.Contains(err.Error(), "secrets.adminToken is required") {
		t.Errorf("rendering without secrets: %v; want secrets.adminToken is required", err)
	}
}

// TestChartDeploymentOnNATS renders relays sharing a NATS queue: a Deployment of several
// relays given --queue, no volume claim, the mapping folders mounted where the sources file
// names them, each source's write key from the Secret, and a ServiceMonitor.
func TestChartDeploymentOnNATS(t *testing.T) {
	r := render(t, natsValues())
	var d appsv1.Deployment
	if !r.get(t, "Deployment", "", &d) {
		t.Fatalf("no Deployment; rendered %v", r.kinds())
	}
	if r.get(t, "StatefulSet", "", &appsv1.StatefulSet{}) {
		t.Error("a StatefulSet beside the Deployment")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want several", d.Spec.Replicas)
	}
	flags := checkPod(t, d.Spec.Template, false)
	if flags["queue"] != "nats://nats-0.nats:4222,nats://nats-1.nats:4222" {
		t.Errorf("--queue=%q", flags["queue"])
	}
	var cm corev1.ConfigMap
	r.get(t, "ConfigMap", "", &cm)
	if !strings.Contains(cm.Data["woorelay.yaml"], `mappings: ["mappings/video"]`) || !strings.Contains(cm.Data["woorelay.yaml"], "WOORELAY_WRITE_KEY_BACK_END") {
		t.Errorf("the sources file:\n%s", cm.Data["woorelay.yaml"])
	}
	var found bool
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		for _, it := range v.ConfigMap.Items {
			if it.Path == "mappings/video/video.yaml" && cm.Data[it.Key] != "" {
				found = true
			}
		}
	}
	if !found {
		t.Error("the mapping file is not mounted at mappings/video/video.yaml beside the sources file")
	}
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = e.ValueFrom.SecretKeyRef.Key
		}
	}
	if env["WOORELAY_WRITE_KEY_BACK_END"] != "write-key-back-end" || env["WOORELAY_ADMIN_TOKEN"] != "admin-token" {
		t.Errorf("secret environment %v", env)
	}
	var sm unstructured.Unstructured
	if !r.get(t, "ServiceMonitor", "", &sm.Object) {
		t.Error("no ServiceMonitor although serviceMonitor.enabled is true")
	}
}

// TestChartSourcesFilePassesConfigCheck renders the chart's sources file and gives it to
// `woorelay config check` (as ExecStartPre does in the systemd unit), with the write keys in
// the environment as the Secret sets them.
func TestChartSourcesFilePassesConfigCheck(t *testing.T) {
	serveFlags(t) // builds the binary
	r := render(t, natsValues())
	var cm corev1.ConfigMap
	r.get(t, "ConfigMap", "", &cm)
	dir := t.TempDir()
	for key, content := range cm.Data {
		path := filepath.Join(dir, "woorelay.yaml")
		if key != "woorelay.yaml" {
			parts := strings.SplitN(key, ".", 3)
			path = filepath.Join(dir, parts[0], parts[1], parts[2])
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(binary, "config", "check", filepath.Join(dir, "woorelay.yaml"))
	cmd.Env = append(os.Environ(), "WOORELAY_WRITE_KEY_WEBSITE=k1", "WOORELAY_WRITE_KEY_BACK_END=k2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("woorelay config check on the chart's sources file: %v\n%s\n%s", err, out, cm.Data["woorelay.yaml"])
	}
}
