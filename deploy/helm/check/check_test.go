package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chart     = "../eyeflow"
	fullCI    = "../eyeflow/ci/full-values.yaml"
	namespace = "eyeflow"
	release   = "eyeflow"
)

// helmBin is the pinned helm scripts/install-helm.sh builds into the cache.
// Missing fails: the chart is only trusted when it was rendered.
func helmBin(t *testing.T) string {
	t.Helper()
	script := filepath.Join("..", "..", "..", "scripts", "install-helm.sh")
	out, err := exec.Command("bash", script, "--path").Output()
	if err != nil {
		t.Fatalf("%s --path: %v", script, err)
	}
	bin := strings.TrimSpace(string(out))
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("helm is not installed at %s: run scripts/install-helm.sh (scripts/setup.sh and make test do); these checks never skip", bin)
	}
	return bin
}

func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// render is `helm template` of the chart with extra arguments.
func render(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", release, chart, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// object is one rendered document, decoded into the type of its kind.
type object struct {
	kind, name string
	obj        any
}

// kinds maps apiVersion/kind to the API type a document must decode into.
// Anything else fails, a Secret above all: the chart never holds one.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                            func() any { return &batchv1.Job{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"networking.k8s.io/v1/Ingress":            func() any { return &networkingv1.Ingress{} },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return &ScaledObject{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

// decodeStrict decodes one YAML document into its kind's type as the API
// server's strict decoding does: YAML to JSON without the target's types
// (as helm and kubectl send it: `value: 3` stays a number and fails a
// string field, which sigs.k8s.io/yaml.UnmarshalStrict would quietly
// convert), then case-sensitive JSON refusing unknown and duplicate fields.
func decodeStrict(doc []byte) (object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, err
	}
	key := tm.APIVersion + "/" + tm.Kind
	if tm.Kind == "Secret" {
		return object{}, errors.New("a Secret is rendered: credentials must come from the user's Secret, never from values")
	}
	newObj, ok := kinds[key]
	if !ok {
		return object{}, fmt.Errorf("%s: a kind this check does not know", key)
	}
	obj := newObj()
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", key, err)
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", key, err)
	}
	if len(strict) > 0 {
		return object{}, fmt.Errorf("%s: %w", key, errors.Join(strict...))
	}
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return object{}, err
	}
	return object{kind: tm.Kind, name: meta.Metadata.Name, obj: obj}, nil
}

// decodeAll splits helm's output into documents and decodes each strictly.
func decodeAll(t *testing.T, data []byte) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		o, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("%v\n%s", err, doc)
			continue
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		t.Fatal("helm rendered nothing")
	}
	return out
}

var commentLine = regexp.MustCompile(`(?m)^\s*#.*$`)

func stripComments(doc []byte) []byte { return commentLine.ReplaceAll(doc, nil) }

// manifest is a render, by kind and name, with the checks that need more than
// one object (selectors, ports, scale targets).
type manifest struct {
	objects      []object
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	jobs         map[string]*batchv1.Job
	configMaps   map[string]*corev1.ConfigMap
	ingresses    map[string]*networkingv1.Ingress
	scaled       map[string]*ScaledObject
	monitors     map[string]*monitoringv1.ServiceMonitor
	rules        map[string]*monitoringv1.PrometheusRule
	countsByKind map[string]int
}

func index(t *testing.T, objs []object) *manifest {
	t.Helper()
	m := &manifest{objects: objs, deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		jobs: map[string]*batchv1.Job{}, configMaps: map[string]*corev1.ConfigMap{}, ingresses: map[string]*networkingv1.Ingress{},
		scaled: map[string]*ScaledObject{}, monitors: map[string]*monitoringv1.ServiceMonitor{}, rules: map[string]*monitoringv1.PrometheusRule{},
		countsByKind: map[string]int{}}
	seen := map[string]bool{}
	for _, o := range objs {
		id := o.kind + "/" + o.name
		if seen[id] {
			t.Errorf("%s rendered twice", id)
		}
		seen[id] = true
		m.countsByKind[o.kind]++
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.name] = v
		case *corev1.Service:
			m.services[o.name] = v
		case *batchv1.Job:
			m.jobs[o.name] = v
		case *corev1.ConfigMap:
			m.configMaps[o.name] = v
		case *networkingv1.Ingress:
			m.ingresses[o.name] = v
		case *ScaledObject:
			m.scaled[o.name] = v
		case *monitoringv1.ServiceMonitor:
			m.monitors[o.name] = v
		case *monitoringv1.PrometheusRule:
			m.rules[o.name] = v
		}
	}
	return m
}

func errs(t *testing.T, where string, msgs []string) {
	t.Helper()
	for _, m := range msgs {
		t.Errorf("%s: %s", where, m)
	}
}

func checkMeta(t *testing.T, kind string, meta metav1.ObjectMeta) {
	t.Helper()
	where := kind + " " + meta.Name
	if meta.Name == "" {
		t.Errorf("%s without a name", kind)
	}
	if kind == "Service" {
		errs(t, where, validation.IsDNS1035Label(meta.Name))
	} else {
		errs(t, where, validation.IsDNS1123Subdomain(meta.Name))
	}
	if meta.Namespace != "" {
		errs(t, where+" namespace", validation.IsDNS1123Label(meta.Namespace))
	}
	checkLabels(t, where, meta.Labels)
	for k := range meta.Annotations {
		errs(t, where+" annotation "+k, validation.IsQualifiedName(k))
	}
}

func checkLabels(t *testing.T, where string, ls map[string]string) {
	t.Helper()
	for k, v := range ls {
		errs(t, where+" label "+k, validation.IsQualifiedName(k))
		errs(t, where+" label "+k+"="+v, validation.IsValidLabelValue(v))
	}
}

// checkPod: what the API server's validation requires of a pod template that
// the types cannot say (names, images, ports, probes, env, volumes, resources).
func checkPod(t *testing.T, where string, spec corev1.PodSpec, restart ...corev1.RestartPolicy) {
	t.Helper()
	if len(spec.Containers) == 0 {
		t.Errorf("%s: no containers", where)
	}
	if len(restart) > 0 {
		ok := false
		for _, r := range restart {
			ok = ok || spec.RestartPolicy == r
		}
		if !ok {
			t.Errorf("%s: restartPolicy %q, want one of %v", where, spec.RestartPolicy, restart)
		}
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		errs(t, where+" volume", validation.IsDNS1123Label(v.Name))
		if volumes[v.Name] {
			t.Errorf("%s: volume %s twice", where, v.Name)
		}
		volumes[v.Name] = true
	}
	names := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		cw := where + " container " + c.Name
		errs(t, cw, validation.IsDNS1123Label(c.Name))
		if names[c.Name] {
			t.Errorf("%s: twice", cw)
		}
		names[c.Name] = true
		if strings.TrimSpace(c.Image) == "" {
			t.Errorf("%s: no image", cw)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				t.Errorf("%s: containerPort %d", cw, p.ContainerPort)
			}
			if p.Name != "" {
				errs(t, cw+" port", validation.IsValidPortName(p.Name))
				ports[p.Name] = p.ContainerPort
			}
		}
		for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			if pr == nil {
				continue
			}
			if pr.HTTPGet == nil {
				t.Errorf("%s: %s probe is not an HTTP GET", cw, name)
				continue
			}
			if p := pr.HTTPGet.Port; p.StrVal != "" {
				if _, ok := ports[p.StrVal]; !ok {
					t.Errorf("%s: %s probe on port %q, which the container does not name", cw, name, p.StrVal)
				}
			} else if p.IntVal < 1 {
				t.Errorf("%s: %s probe without a port", cw, name)
			}
			if !strings.HasPrefix(pr.HTTPGet.Path, "/") {
				t.Errorf("%s: %s probe path %q", cw, name, pr.HTTPGet.Path)
			}
		}
		envs := map[string]bool{}
		for _, e := range c.Env {
			errs(t, cw+" env", validation.IsEnvVarName(e.Name))
			if envs[e.Name] {
				t.Errorf("%s: env %s twice", cw, e.Name)
			}
			envs[e.Name] = true
			if e.Value != "" && e.ValueFrom != nil {
				t.Errorf("%s: env %s has both value and valueFrom", cw, e.Name)
			}
			if e.ValueFrom != nil {
				ref := e.ValueFrom.SecretKeyRef
				if ref == nil {
					t.Errorf("%s: env %s comes from something other than a Secret", cw, e.Name)
					continue
				}
				if ref.Name == "" || ref.Key == "" {
					t.Errorf("%s: env %s: secretKeyRef %+v without a name or key", cw, e.Name, ref)
				}
				errs(t, cw+" env "+e.Name+" key", validation.IsConfigMapKey(ref.Key))
			}
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s: mounts volume %s, which the pod lacks", cw, vm.Name)
			}
			if !path.IsAbs(vm.MountPath) {
				t.Errorf("%s: mount path %q", cw, vm.MountPath)
			}
		}
		for res, req := range c.Resources.Requests {
			lim, ok := c.Resources.Limits[res]
			if ok && req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s above its limit %s", cw, res, req.String(), lim.String())
			}
			if strings.Contains(string(res), "/") && (!ok || req.Cmp(lim) != 0) {
				t.Errorf("%s: extended resource %s: request must equal the limit", cw, res)
			}
		}
		for res, q := range c.Resources.Limits {
			if q.Sign() <= 0 {
				t.Errorf("%s: %s limit %s", cw, res, q.String())
			}
		}
	}
}

func selects(t *testing.T, where string, sel *metav1.LabelSelector, ls map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("%s: selector: %v", where, err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(ls))
}

// check runs every check on a render.
func (m *manifest) check(t *testing.T) {
	t.Helper()
	for _, o := range m.objects {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			checkMeta(t, o.kind, v.ObjectMeta)
		case *corev1.Service:
			checkMeta(t, o.kind, v.ObjectMeta)
		case *batchv1.Job:
			checkMeta(t, o.kind, v.ObjectMeta)
		case *corev1.ConfigMap:
			checkMeta(t, o.kind, v.ObjectMeta)
		case *networkingv1.Ingress:
			checkMeta(t, o.kind, v.ObjectMeta)
		case *ScaledObject:
			checkMeta(t, o.kind, v.ObjectMeta)
		case *monitoringv1.ServiceMonitor:
			checkMeta(t, o.kind, v.ObjectMeta)
		case *monitoringv1.PrometheusRule:
			checkMeta(t, o.kind, v.ObjectMeta)
		}
	}
	for name, d := range m.deployments {
		where := "Deployment " + name
		if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
			t.Errorf("%s: no selector", where)
		} else if !selects(t, where, d.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("%s: selector %v does not match its template's labels %v", where, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
		}
		checkLabels(t, where+" template", d.Spec.Template.Labels)
		if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
			t.Errorf("%s: replicas %d", where, *d.Spec.Replicas)
		}
		checkPod(t, where, d.Spec.Template.Spec, "", corev1.RestartPolicyAlways)
		// Two Deployments selecting each other's pods fight over them.
		for other, o := range m.deployments {
			if other != name && selects(t, where, d.Spec.Selector, o.Spec.Template.Labels) {
				t.Errorf("%s: its selector also matches Deployment %s's pods", where, other)
			}
		}
	}
	for name, j := range m.jobs {
		where := "Job " + name
		checkPod(t, where, j.Spec.Template.Spec, corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure)
		if j.Spec.Selector != nil || j.Spec.ManualSelector != nil {
			t.Errorf("%s: a Job's selector is the API server's", where)
		}
	}
	for name, s := range m.services {
		where := "Service " + name
		if len(s.Spec.Ports) == 0 {
			t.Errorf("%s: no ports", where)
		}
		var pods []corev1.PodSpec
		for _, d := range m.deployments {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				pods = append(pods, d.Spec.Template.Spec)
			}
		}
		if len(pods) == 0 {
			t.Errorf("%s: its selector %v matches no Deployment's pods", where, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			errs(t, where+" port", validation.IsValidPortName(p.Name))
			if p.Port < 1 || p.Port > 65535 {
				t.Errorf("%s: port %d", where, p.Port)
			}
			if p.TargetPort.StrVal == "" {
				continue
			}
			for _, pod := range pods {
				found := false
				for _, c := range pod.Containers {
					for _, cp := range c.Ports {
						found = found || cp.Name == p.TargetPort.StrVal
					}
				}
				if !found {
					t.Errorf("%s: targetPort %q is no container's port", where, p.TargetPort.StrVal)
				}
			}
		}
	}
	for name, in := range m.ingresses {
		for _, r := range in.Spec.Rules {
			if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
				t.Errorf("Ingress %s: a rule without paths", name)
				continue
			}
			for _, p := range r.HTTP.Paths {
				if p.PathType == nil || p.Backend.Service == nil {
					t.Errorf("Ingress %s: path %q without a pathType or service", name, p.Path)
					continue
				}
				svc, ok := m.services[p.Backend.Service.Name]
				if !ok {
					t.Errorf("Ingress %s: backend %s is not a rendered Service", name, p.Backend.Service.Name)
					continue
				}
				found := false
				for _, sp := range svc.Spec.Ports {
					found = found || (sp.Name != "" && sp.Name == p.Backend.Service.Port.Name) || (sp.Port == p.Backend.Service.Port.Number && sp.Port != 0)
				}
				if !found {
					t.Errorf("Ingress %s: Service %s has no port %+v", name, svc.Name, p.Backend.Service.Port)
				}
			}
		}
	}
	for name, so := range m.scaled {
		where := "ScaledObject " + name
		ref := so.Spec.ScaleTargetRef
		if ref == nil || ref.Name == "" {
			t.Errorf("%s: no scaleTargetRef", where)
			continue
		}
		if ref.Kind != "" && (ref.Kind != "Deployment" || ref.APIVersion != "apps/v1") {
			t.Errorf("%s: target %s %s", where, ref.APIVersion, ref.Kind)
		}
		d, ok := m.deployments[ref.Name]
		if !ok {
			t.Errorf("%s: scales %s, which is not a rendered Deployment", where, ref.Name)
		} else if d.Spec.Replicas != nil {
			t.Errorf("%s: Deployment %s sets replicas, which KEDA's HPA owns (every upgrade would reset it)", where, ref.Name)
		}
		if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil || *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount || *so.Spec.MaxReplicaCount < 1 {
			t.Errorf("%s: replicas %v..%v", where, so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
		}
		if len(so.Spec.Triggers) == 0 {
			t.Errorf("%s: no triggers", where)
		}
		for i, tr := range so.Spec.Triggers {
			if tr.Type != "nats-jetstream" {
				t.Errorf("%s trigger %d: type %q", where, i, tr.Type)
				continue
			}
			for _, k := range []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"} {
				if tr.Metadata[k] == "" {
					t.Errorf("%s trigger %d: no %s", where, i, k)
				}
			}
			if n, err := strconv.Atoi(tr.Metadata["lagThreshold"]); err != nil || n < 1 {
				t.Errorf("%s trigger %d: lagThreshold %q", where, i, tr.Metadata["lagThreshold"])
			}
			if ep := tr.Metadata["natsServerMonitoringEndpoint"]; strings.Contains(ep, "://") || !strings.Contains(ep, ":") {
				t.Errorf("%s trigger %d: natsServerMonitoringEndpoint %q: want host:port", where, i, ep)
			}
		}
	}
	for name, sm := range m.monitors {
		where := "ServiceMonitor " + name
		var matched []*corev1.Service
		for _, s := range m.services {
			if selects(t, where, &sm.Spec.Selector, s.Labels) {
				matched = append(matched, s)
			}
		}
		if len(matched) == 0 {
			t.Errorf("%s: selects no rendered Service", where)
		}
		if len(sm.Spec.Endpoints) == 0 {
			t.Errorf("%s: no endpoints", where)
		}
		for _, s := range matched {
			if sm.Spec.JobLabel != "" && s.Labels[sm.Spec.JobLabel] == "" {
				t.Errorf("%s: Service %s lacks the job label %s", where, s.Name, sm.Spec.JobLabel)
			}
			for _, ep := range sm.Spec.Endpoints {
				found := false
				for _, p := range s.Spec.Ports {
					found = found || (ep.Port != "" && p.Name == ep.Port)
				}
				if !found {
					t.Errorf("%s: Service %s has no port %v", where, s.Name, ep.Port)
				}
			}
		}
	}
	for name, pr := range m.rules {
		if len(pr.Spec.Groups) == 0 {
			t.Errorf("PrometheusRule %s: no groups", name)
		}
		for _, g := range pr.Spec.Groups {
			if g.Name == "" || len(g.Rules) == 0 {
				t.Errorf("PrometheusRule %s: group %q without a name or rules", name, g.Name)
			}
			for _, r := range g.Rules {
				if (r.Alert == "") == (r.Record == "") || r.Expr.String() == "" {
					t.Errorf("PrometheusRule %s: rule %q/%q: want one of alert and record, and an expr", name, r.Alert, r.Record)
				}
			}
		}
	}
	for name, cm := range m.configMaps {
		size := 0
		for k, v := range cm.Data {
			errs(t, "ConfigMap "+name+" key", validation.IsConfigMapKey(k))
			size += len(k) + len(v)
			if strings.HasSuffix(k, ".json") && !json.Valid([]byte(v)) {
				t.Errorf("ConfigMap %s: %s is not JSON", name, k)
			}
		}
		if size > 1<<20 {
			t.Errorf("ConfigMap %s: %d bytes, over the API's 1 MiB", name, size)
		}
	}
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment %s: %d containers", d.Name, len(d.Spec.Template.Spec.Containers))
	}
	return d.Spec.Template.Spec.Containers[0]
}

func envOf(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// secretish are the variables that hold a credential: each must come from a
// Secret, never from a value in the manifest.
var secretish = regexp.MustCompile(`PASSWORD|SECRET|TOKEN|ACCESS_KEY|_SALT$`)

func checkNoPlainSecrets(t *testing.T, m *manifest) {
	t.Helper()
	var pods []corev1.PodSpec
	for _, d := range m.deployments {
		pods = append(pods, d.Spec.Template.Spec)
	}
	for _, j := range m.jobs {
		pods = append(pods, j.Spec.Template.Spec)
	}
	for _, p := range pods {
		for _, c := range append(append([]corev1.Container{}, p.InitContainers...), p.Containers...) {
			for _, e := range c.Env {
				if secretish.MatchString(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("container %s: %s is a plain value, want a secretKeyRef", c.Name, e.Name)
				}
			}
			for _, a := range c.Args {
				if secretish.MatchString(strings.ToUpper(a)) && strings.Contains(a, "=") {
					t.Errorf("container %s: argument %q looks like a credential", c.Name, a)
				}
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	m := index(t, decodeAll(t, render(t)))
	m.check(t)
	checkNoPlainSecrets(t, m)
	// Six stages, three classifier instances and the dashboard; the hook; the board.
	want := map[string]int{"Deployment": 10, "Service": 10, "Job": 1, "ConfigMap": 1}
	for k, n := range want {
		if m.countsByKind[k] != n {
			t.Errorf("%d %ss, want %d", m.countsByKind[k], k, n)
		}
	}
	for _, k := range []string{"ScaledObject", "ServiceMonitor", "PrometheusRule", "Ingress"} {
		if m.countsByKind[k] != 0 {
			t.Errorf("%d %ss by default (autoscaling off, no Prometheus Operator CRDs, no Ingress)", m.countsByKind[k], k)
		}
	}
	for name, d := range m.deployments {
		c := container(t, d)
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("Deployment %s: no memory limit or CPU request", name)
		}
		if _, ok := c.Resources.Limits["nvidia.com/gpu"]; ok {
			t.Errorf("Deployment %s asks for a GPU by default", name)
		}
		if d.Spec.Replicas == nil {
			t.Errorf("Deployment %s: no replicas without autoscaling", name)
		}
	}
	j := m.jobs[release+"-init"]
	if j == nil {
		t.Fatalf("no hook Job %s-init", release)
	}
	if hook := j.Annotations["helm.sh/hook"]; hook != "pre-install,pre-upgrade" {
		t.Errorf("Job %s: helm.sh/hook %q", j.Name, hook)
	}
}

// TestEverythingOn: KEDA, GPUs, the Prometheus Operator and the Ingress.
func TestEverythingOn(t *testing.T) {
	m := index(t, decodeAll(t, render(t, "-f", fullCI, "--api-versions", "monitoring.coreos.com/v1")))
	m.check(t)
	checkNoPlainSecrets(t, m)
	for _, k := range []string{"ScaledObject", "ServiceMonitor", "PrometheusRule", "Ingress"} {
		if m.countsByKind[k] == 0 {
			t.Errorf("no %s", k)
		}
	}
	// Every Deployment but the dashboard scales on lag.
	if got, want := m.countsByKind["ScaledObject"], m.countsByKind["Deployment"]-1; got != want {
		t.Errorf("%d ScaledObjects for %d stage Deployments", got, want)
	}
	gpus := 0
	for name, d := range m.deployments {
		c := container(t, d)
		if d.Labels["eyeflow.io/stage"] != "classifier" {
			continue
		}
		gpus++
		if q, ok := c.Resources.Limits["nvidia.com/gpu"]; !ok || q.Value() != 1 {
			t.Errorf("Deployment %s: nvidia.com/gpu limit %v", name, c.Resources.Limits)
		}
		caps, _ := envOf(c, "NVIDIA_DRIVER_CAPABILITIES")
		if !strings.Contains(caps.Value, "graphics") {
			t.Errorf("Deployment %s: NVIDIA_DRIVER_CAPABILITIES %q lacks graphics (the Vulkan ICD)", name, caps.Value)
		}
		if _, ok := envOf(c, "NVIDIA_VISIBLE_DEVICES"); ok {
			t.Errorf("Deployment %s sets NVIDIA_VISIBLE_DEVICES: the device plugin assigns the pod's GPUs", name)
		}
		if !strings.HasSuffix(c.Image, "-gpu") || len(c.Command) != 0 {
			t.Errorf("Deployment %s: image %s, command %v: want the GPU image with its own entrypoint", name, c.Image, c.Command)
		}
	}
	if gpus == 0 {
		t.Error("no classifier Deployment")
	}
}

// TestPrometheusOperatorGate: the ServiceMonitor and PrometheusRule follow
// the CRDs' presence and their values switches.
func TestPrometheusOperatorGate(t *testing.T) {
	on := index(t, decodeAll(t, render(t, "--api-versions", "monitoring.coreos.com/v1")))
	on.check(t)
	if on.countsByKind["ServiceMonitor"] != 1 || on.countsByKind["PrometheusRule"] != 1 {
		t.Errorf("with the CRDs: %d ServiceMonitors, %d PrometheusRules, want 1 each", on.countsByKind["ServiceMonitor"], on.countsByKind["PrometheusRule"])
	}
	off := index(t, decodeAll(t, render(t, "--api-versions", "monitoring.coreos.com/v1",
		"--set", "monitoring.serviceMonitor.enabled=false,monitoring.prometheusRule.enabled=false")))
	if off.countsByKind["ServiceMonitor"]+off.countsByKind["PrometheusRule"] != 0 {
		t.Error("switched off, yet rendered")
	}
}

func TestLint(t *testing.T) {
	for _, args := range [][]string{nil, {"-f", fullCI}} {
		if out, err := runHelm(t, append([]string{"lint", "--strict", chart}, args...)...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// TestSchemaRefuses: values.schema.json turns a wrong type, a missing
// required value or a misspelt key into an error naming it.
func TestSchemaRefuses(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--set", "stages.resize.replicas=two"}, "/stages/resize/replicas"},
		{[]string{"--set-string", "autoscaling.enabled=yes"}, "/autoscaling/enabled"},
		{[]string{"--set", "s3.endpoint=null"}, "missing property 'endpoint'"},
		{[]string{"--set", "stages.trainer=null"}, "missing property 'trainer'"},
		{[]string{"--set", "autoscalling.enabled=true"}, "'autoscalling' not allowed"},
		{[]string{"--set", "stages.classifier.instances.prod.envs={prd}"}, "/stages/classifier/instances/prod/envs/0"},
		{[]string{"--set", "nats.url=http://nats:4222"}, "/nats/url"},
		{[]string{"--set", "init.wait=soon"}, "/init/wait"},
		{[]string{"--set", "stages.resize.autoscaling.lagThreshold=0"}, "/stages/resize/autoscaling/lagThreshold"},
		{[]string{"--set", "stages.classifier.gpu.device=gpu0"}, "/stages/classifier/gpu/device"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runHelm(t, append([]string{"template", release, chart}, tt.args...)...)
			if err == nil {
				t.Fatal("rendered")
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error does not name %q:\n%v", tt.want, err)
			}
		})
	}
}

// TestStrictDecoding: the decoder this check relies on refuses what the API
// server would (or, for a CRD, what its type lacks).
func TestStrictDecoding(t *testing.T) {
	bad := map[string]string{
		"unknown field": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n",
		"wrong type":    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n",
		"duplicate key": "apiVersion: v1\nkind: Service\nmetadata: {name: x, name: y}\n",
		"KEDA metadata not a string": "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\n" +
			"spec: {scaleTargetRef: {name: x}, triggers: [{type: nats-jetstream, metadata: {lagThreshold: 10}}]}\n",
		"a number for a string": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: 3}\n",
		"a field's case":        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {Replicas: 2}\n",
		"KEDA unknown field":    "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {minReplicas: 1}\n",
		"a Secret":              "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {a: b}\n",
		"unknown kind":          "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
	}
	for name, doc := range bad {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 2}\n")); err != nil {
		t.Errorf("a good document: %v", err)
	}
}
