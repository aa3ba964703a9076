package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"eyeflow/bus"
	"eyeflow/pipeline"
	"eyeflow/schemas"
	"eyeflow/security/natsauth"

	"go.yaml.in/yaml/v3"
)

// The chart deploy/helm/eyeflow held to the binary and the stage catalogue,
// as compose_test.go holds compose.yaml: every stage has its Deployment
// running its real command as its own NATS user, every consumer its
// ScaledObject trigger, every NATS user its password key in the Secret.
// deploy/helm/check decodes the same renders strictly into the Kubernetes
// types; no cluster runs in either.

const (
	chartDir     = "../../deploy/helm/eyeflow"
	chartFullCI  = chartDir + "/ci/full-values.yaml"
	natsValues   = "../../deploy/helm/nats-values.yaml"
	helmInstall  = "../../scripts/install-helm.sh"
	chartRelease = "eyeflow"
)

// helmBin is the pinned helm of scripts/install-helm.sh, in its cache.
func helmBin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("bash", helmInstall, "--path").Output()
	if err != nil {
		t.Fatalf("%s --path: %v", helmInstall, err)
	}
	bin := strings.TrimSpace(string(out))
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("helm is not installed at %s: run scripts/install-helm.sh (scripts/setup.sh and make test do); the chart's tests never skip", bin)
	}
	return bin
}

type chartEnv struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name     string `yaml:"name"`
			Key      string `yaml:"key"`
			Optional bool   `yaml:"optional"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type chartProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type chartContainer struct {
	Name    string     `yaml:"name"`
	Image   string     `yaml:"image"`
	Command []string   `yaml:"command"`
	Args    []string   `yaml:"args"`
	Env     []chartEnv `yaml:"env"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *chartProbe `yaml:"livenessProbe"`
	ReadinessProbe *chartProbe `yaml:"readinessProbe"`
}

func (c chartContainer) env(name string) (chartEnv, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return chartEnv{}, false
}

// chartObject is the part of a rendered object these tests read.
type chartObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				InitContainers []chartContainer `yaml:"initContainers"`
				Containers     []chartContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		ScaleTargetRef struct {
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		Triggers []struct {
			Type     string            `yaml:"type"`
			Metadata map[string]string `yaml:"metadata"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

func (o chartObject) containers() []chartContainer {
	return append(slices.Clone(o.Spec.Template.Spec.InitContainers), o.Spec.Template.Spec.Containers...)
}

// renderChart is `helm template` of the chart, decoded by kind and name.
func renderChart(t *testing.T, args ...string) map[string]map[string]chartObject {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin(t), append([]string{"template", chartRelease, chartDir, "--namespace", "eyeflow"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	out := map[string]map[string]chartObject{}
	dec := yaml.NewDecoder(&stdout)
	for {
		var o chartObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("helm template %v: %v", args, err)
		}
		if o.Kind == "" {
			continue
		}
		if out[o.Kind] == nil {
			out[o.Kind] = map[string]chartObject{}
		}
		out[o.Kind][o.Metadata.Name] = o
	}
	return out
}

// chartRenders are the renders every test looks at: the default values, and
// ci/'s with autoscaling, GPUs and the Prometheus Operator on.
func chartRenders(t *testing.T) map[string]map[string]map[string]chartObject {
	t.Helper()
	return map[string]map[string]map[string]chartObject{
		"default": renderChart(t),
		"ci":      renderChart(t, "-f", chartFullCI, "--api-versions", "monitoring.coreos.com/v1"),
	}
}

// chartWords splits a container's args into the eyeflow command words and
// the rest.
func chartWords(t *testing.T, where string, args []string) ([]string, []string) {
	t.Helper()
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	if len(args) == 0 || !slices.Contains(names, args[0]) {
		t.Fatalf("%s: args %v: not an eyeflow subcommand (%v)", where, args, names)
	}
	n := 1
	if verbs[args[0]] {
		n = 2
	}
	return args[:n], args[n:]
}

// flagValue is the value of --name in args ("" when absent).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// gpuImageVars are the variables Dockerfile.gpu's images set (ENV): the
// only ones besides EYEFLOW_* the chart may set.
func gpuImageVars(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../../Dockerfile.gpu")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)(?:^ENV |\\\n\s+)([A-Z_]+)=`).FindAllStringSubmatch(string(data), -1) {
		out[m[1]] = true
	}
	if !out["NVIDIA_DRIVER_CAPABILITIES"] || !out["XDG_RUNTIME_DIR"] {
		t.Fatalf("Dockerfile.gpu's variables not found: %v", out)
	}
	return out
}

// TestHelmChartCommandsAreReal: every container of the chart runs a real
// eyeflow command (the image's entrypoint, args only) with real flags, sets
// only the EYEFLOW_* variables of that command's flags (and the GPU image's
// own variables), every secret from a Secret, and probes /healthz and
// /readyz on the port its EYEFLOW_HTTP names; the dashboard's
// --metrics-urls name rendered Services.
func TestHelmChartCommandsAreReal(t *testing.T) {
	imageVars := gpuImageVars(t)
	for name, r := range chartRenders(t) {
		t.Run(name, func(t *testing.T) {
			for _, kind := range []string{"Deployment", "Job"} {
				if len(r[kind]) == 0 {
					t.Fatalf("no %s rendered", kind)
				}
				for oname, o := range r[kind] {
					for _, c := range o.containers() {
						where := kind + " " + oname + " container " + c.Name
						if len(c.Command) != 0 {
							t.Errorf("%s: command %v replaces the image's entrypoint (the GPU image's wrapper finds the Vulkan driver)", where, c.Command)
						}
						words, rest := chartWords(t, where, c.Args)
						flags := commandFlags(t, words)
						envs := map[string]bool{}
						for _, env := range flags {
							envs[env] = true
						}
						// Secrets: the flags whose help says the environment only.
						secrets := map[string]bool{}
						var usage bytes.Buffer
						_ = run(t.Context(), append(slices.Clone(words), "--help"), &usage, io.Discard)
						for _, m := range regexp.MustCompile(`\[\$([A-Z0-9_]+)\][^\n]*\n\s+[^\n]*environment only`).FindAllStringSubmatch(usage.String(), -1) {
							secrets[m[1]] = true
						}
						for _, a := range rest {
							if f, ok := strings.CutPrefix(a, "--"); ok {
								f, _, _ = strings.Cut(f, "=")
								if _, ok := flags[f]; !ok {
									t.Errorf("%s: eyeflow %s has no flag --%s", where, strings.Join(words, " "), f)
								}
							}
						}
						httpAddr := ""
						for _, e := range c.Env {
							switch {
							case strings.HasPrefix(e.Name, "EYEFLOW_") && !envs[e.Name]:
								t.Errorf("%s: %s is not the variable of any flag of eyeflow %s", where, e.Name, strings.Join(words, " "))
							case !strings.HasPrefix(e.Name, "EYEFLOW_") && !imageVars[e.Name]:
								t.Errorf("%s: %s is neither an EYEFLOW_* variable nor one of Dockerfile.gpu's", where, e.Name)
							}
							fromSecret := e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
							sensitive := secrets[e.Name] || e.Name == "EYEFLOW_S3_ACCESS_KEY" || e.Name == "EYEFLOW_SPLIT_SALT"
							if sensitive && !fromSecret {
								t.Errorf("%s: %s is a secret given as a plain value", where, e.Name)
							}
							if e.Name == "EYEFLOW_HTTP" {
								httpAddr = e.Value
							}
						}
						if v, ok := flagValue(rest, "metrics-urls"); ok {
							for _, u := range strings.Split(v, ",") {
								p, err := url.Parse(u)
								if err != nil {
									t.Fatal(err)
								}
								if _, ok := r["Service"][p.Hostname()]; !ok {
									t.Errorf("%s: --metrics-urls names %s, which is not a rendered Service", where, p.Hostname())
								}
							}
						}
						if kind == "Job" {
							continue
						}
						if httpAddr == "" {
							t.Errorf("%s: no EYEFLOW_HTTP", where)
							continue
						}
						port := portOf(t, httpAddr)
						named := map[string]string{}
						for _, p := range c.Ports {
							named[p.Name] = strconv.Itoa(p.ContainerPort)
						}
						for probe, want := range map[*chartProbe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
							if probe == nil || probe.HTTPGet.Path != want || named[probe.HTTPGet.Port] != port {
								t.Errorf("%s: want a probe on %s at port %s (EYEFLOW_HTTP %s), got %+v", where, want, port, httpAddr, probe)
							}
						}
					}
				}
			}
		})
	}
}

// TestHelmChartRunsEveryStage: every stage of the catalogue has a Deployment
// running `eyeflow <stage>` logged in as the stage's own NATS user with its
// own password key; the dashboard and the hook run as admin; the hook
// applies the topology before it initialises the buckets.
func TestHelmChartRunsEveryStage(t *testing.T) {
	for name, r := range chartRenders(t) {
		t.Run(name, func(t *testing.T) {
			ran := map[string]bool{}
			for dname, d := range r["Deployment"] {
				for _, c := range d.containers() {
					role := c.Args[0]
					if _, ok := pipeline.Find(role); ok {
						ran[role] = true
						if d.Metadata.Labels["eyeflow.io/stage"] != role {
							t.Errorf("Deployment %s runs %s but is labelled stage %q", dname, role, d.Metadata.Labels["eyeflow.io/stage"])
						}
					} else {
						role = natsauth.RoleAdmin
					}
					checkLogin(t, "Deployment "+dname, c, role)
				}
			}
			for _, st := range pipeline.Stages() {
				if !ran[st.Name] {
					t.Errorf("no Deployment runs stage %s (`eyeflow %s`)", st.Name, st.Name)
				}
			}
			if len(r["Job"]) != 1 {
				t.Fatalf("%d Jobs, want the topology and buckets hook", len(r["Job"]))
			}
			for jname, j := range r["Job"] {
				var ran []string
				for _, c := range j.containers() {
					checkLogin(t, "Job "+jname, c, natsauth.RoleAdmin)
					words, _ := chartWords(t, jname, c.Args)
					ran = append(ran, strings.Join(words, " "))
				}
				if !slices.Equal(ran, []string{"topology apply", "buckets init"}) {
					t.Errorf("Job %s runs %v, want topology apply (init container) then buckets init", jname, ran)
				}
			}
		})
	}
}

// checkLogin: the container logs in as role's NATS user, its password from
// role's key of the Secret.
func checkLogin(t *testing.T, where string, c chartContainer, role string) {
	t.Helper()
	user, _ := c.env("EYEFLOW_NATS_USER")
	pw, _ := c.env("EYEFLOW_NATS_PASSWORD")
	if user.Value != natsauth.UserName(role) {
		t.Errorf("%s runs %v as NATS user %q, want %q", where, c.Args, user.Value, natsauth.UserName(role))
	}
	key := "(not from a Secret)"
	if pw.ValueFrom != nil && pw.ValueFrom.SecretKeyRef != nil {
		key = pw.ValueFrom.SecretKeyRef.Key
	}
	if key != natsauth.PasswordEnv(role) {
		t.Errorf("%s: EYEFLOW_NATS_PASSWORD from key %s, want key %s of the Secret", where, key, natsauth.PasswordEnv(role))
	}
}

// optionalFlags turn a stage's optional consumer on: the stage reads (and
// creates) it only with the flag above 0.
var optionalFlags = map[string]string{bus.ConsumerLabelsinkPredictions: "label-low-confidence"}

// TestHelmChartScalesEveryConsumer: with autoscaling, every stage
// Deployment has a ScaledObject whose nats-jetstream triggers are exactly
// the durable consumers its command reads (the classifier's per env of
// --envs, an optional one when its flag turns it on), on their streams; and
// every consumer of the topology has a trigger.
func TestHelmChartScalesEveryConsumer(t *testing.T) {
	r := renderChart(t, "-f", chartFullCI)
	if len(r["ScaledObject"]) == 0 {
		t.Fatal("no ScaledObject with autoscaling.enabled")
	}
	triggered := map[string]bool{}
	scaled := map[string]bool{}
	for sname, so := range r["ScaledObject"] {
		target, ok := r["Deployment"][so.Spec.ScaleTargetRef.Name]
		if !ok {
			t.Errorf("ScaledObject %s scales %q, which is not a rendered Deployment", sname, so.Spec.ScaleTargetRef.Name)
			continue
		}
		scaled[so.Spec.ScaleTargetRef.Name] = true
		args := target.Spec.Template.Spec.Containers[0].Args
		st, ok := pipeline.Find(args[0])
		if !ok {
			t.Errorf("ScaledObject %s scales %s, which runs no stage", sname, target.Metadata.Name)
			continue
		}
		want := consumersOf(t, args)
		for _, in := range st.Inputs {
			flag := optionalFlags[in.Consumer]
			if !in.Optional {
				continue
			}
			if flag == "" {
				t.Errorf("stage %s: optional consumer %s without a flag known to turn it on (optionalFlags)", st.Name, in.Consumer)
			}
			if v, ok := flagValue(args, flag); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
					want = append(want, in.Consumer)
				}
			}
		}
		var got []string
		for i, tr := range so.Spec.Triggers {
			c := tr.Metadata["consumer"]
			got = append(got, c)
			triggered[c] = true
			spec, ok := pipeline.ConsumerSpec(bus.DefaultOptions(), c)
			if tr.Type != "nats-jetstream" || !ok {
				t.Errorf("ScaledObject %s trigger %d: %s on consumer %q, not a consumer of the catalogue", sname, i, tr.Type, c)
				continue
			}
			if tr.Metadata["stream"] != spec.Stream {
				t.Errorf("ScaledObject %s trigger %d: consumer %s on stream %q, the catalogue's is on %s", sname, i, c, tr.Metadata["stream"], spec.Stream)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("ScaledObject %s (%v) triggers on %v, the command reads %v", sname, args, got, want)
		}
	}
	for dname, d := range r["Deployment"] {
		if _, stage := pipeline.Find(d.Spec.Template.Spec.Containers[0].Args[0]); stage && !scaled[dname] {
			t.Errorf("stage Deployment %s has no ScaledObject", dname)
		}
	}
	for _, cs := range pipeline.Topology(bus.DefaultOptions()).Consumers {
		if !triggered[cs.Config.Durable] {
			t.Errorf("consumer %s on %s: no ScaledObject trigger", cs.Config.Durable, cs.Stream)
		}
	}
}

// TestHelmChartPasswords: every NATS user of the table has its password
// key in the Secret the NATS chart's values read (the server resolves each
// user's variable from it), the chart reads its passwords from the same
// Secret, and every key the chart needs is one `kubectl create secret
// generic --from-env-file=.env` gives it from .env.example's names.
func TestHelmChartPasswords(t *testing.T) {
	data, err := os.ReadFile(natsValues)
	if err != nil {
		t.Fatal(err)
	}
	var nv struct {
		Container struct {
			Env map[string]struct {
				ValueFrom struct {
					SecretKeyRef struct{ Name, Key string } `yaml:"secretKeyRef"`
				} `yaml:"valueFrom"`
			} `yaml:"env"`
		} `yaml:"container"`
	}
	if err := yaml.Unmarshal(data, &nv); err != nil {
		t.Fatal(err)
	}
	var values struct {
		Secrets struct {
			Name string `yaml:"name"`
		} `yaml:"secrets"`
	}
	data, err = os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	secret := values.Secrets.Name
	if secret != natsauth.HelmSecret {
		t.Errorf("the chart's secrets.name %q is not the Secret %q nats-values.yaml reads", secret, natsauth.HelmSecret)
	}
	pwKeys := map[string]bool{}
	for _, u := range natsauth.Users() {
		pwKeys[u.PasswordEnv] = true
		ref := nv.Container.Env[u.PasswordEnv].ValueFrom.SecretKeyRef
		if ref.Name != secret || ref.Key != u.PasswordEnv {
			t.Errorf("NATS user %s: the servers' %s comes from %+v, want key %s of Secret %s", u.Name, u.PasswordEnv, ref, u.PasswordEnv, secret)
		}
	}
	example := map[string]bool{}
	data, err = os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, _, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			example[k] = true
		}
	}
	for name, r := range chartRenders(t) {
		for _, kind := range []string{"Deployment", "Job"} {
			for oname, o := range r[kind] {
				for _, c := range o.containers() {
					for _, e := range c.Env {
						if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
							continue
						}
						ref := e.ValueFrom.SecretKeyRef
						where := name + ": " + kind + " " + oname + " " + e.Name
						if ref.Name != secret {
							t.Errorf("%s: from Secret %q, want %q", where, ref.Name, secret)
						}
						if strings.HasPrefix(ref.Key, "EYEFLOW_NATS_PASSWORD_") && !pwKeys[ref.Key] {
							t.Errorf("%s: key %s is no NATS user's password", where, ref.Key)
						}
						if !ref.Optional && !example[ref.Key] {
							t.Errorf("%s: key %s is not in .env.example, so a Secret made from it lacks the key", where, ref.Key)
						}
					}
				}
			}
		}
	}
}

// TestHelmChartCopiesAndEnvs: files/ holds exact copies of the alerting
// rules and the Grafana boards (helm reads only files inside a chart), and
// the schema's envs are the pipeline's.
func TestHelmChartCopiesAndEnvs(t *testing.T) {
	pairs := map[string]string{chartDir + "/files/eyeflow.rules.yml": "../../deploy/prometheus/rules/eyeflow.rules.yml"}
	boards, err := filepath.Glob("../../deploy/grafana/dashboards/*.json")
	if err != nil || len(boards) == 0 {
		t.Fatalf("no boards: %v", err)
	}
	for _, b := range boards {
		pairs[chartDir+"/files/dashboards/"+filepath.Base(b)] = b
	}
	copies, _ := filepath.Glob(chartDir + "/files/dashboards/*.json")
	if len(copies) != len(boards) {
		t.Errorf("%d boards in the chart, %d in deploy/grafana/dashboards", len(copies), len(boards))
	}
	for cp, src := range pairs {
		a, err1 := os.ReadFile(cp)
		b, err2 := os.ReadFile(src)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s is not a copy of %s (%v, %v): cp %s %s", cp, src, err1, err2, strings.TrimPrefix(src, "../../"), strings.TrimPrefix(cp, "../../"))
		}
	}
	data, err := os.ReadFile(chartDir + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Stages struct {
				Properties struct {
					Classifier struct {
						Properties struct {
							Instances struct {
								AdditionalProperties struct {
									Properties struct {
										Envs struct {
											Items struct {
												Enum []string `json:"enum"`
											} `json:"items"`
										} `json:"envs"`
									} `json:"properties"`
								} `json:"additionalProperties"`
							} `json:"instances"`
						} `json:"properties"`
					} `json:"classifier"`
				} `json:"properties"`
			} `json:"stages"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	enum := schema.Properties.Stages.Properties.Classifier.Properties.Instances.AdditionalProperties.Properties.Envs.Items.Enum
	if !slices.Equal(enum, schemas.Envs()) {
		t.Errorf("values.schema.json's classifier envs %v, the pipeline's are %v", enum, schemas.Envs())
	}
}

// TestNATSConfigHelmFormat: `eyeflow nats-config --format helm` writes the
// checked-in deploy/helm/nats-values.yaml (security/natsauth's test keeps
// that file equal to the table), and an unknown format is refused.
func TestNATSConfigHelmFormat(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"nats-config", "--format", "helm"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(natsValues)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("eyeflow nats-config --format helm differs from %s", natsValues)
	}
	if err := run(t.Context(), []string{"nats-config", "--format", "yaml"}, io.Discard, io.Discard); err == nil {
		t.Error("--format yaml accepted")
	}
}
