package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/url"
	"os"
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

// flagHelp is `--name  [$ENV]` in a command's usage (flags.go).
var flagHelp = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)  \[\$([A-Z0-9_]+)\]`)

// commandFlags asks the real command for its flags: flag name -> env var.
func commandFlags(t *testing.T, words []string) map[string]string {
	t.Helper()
	var usage bytes.Buffer
	_ = run(context.Background(), append(slices.Clone(words), "--help"), &usage, io.Discard)
	out := map[string]string{}
	for _, m := range flagHelp.FindAllStringSubmatch(usage.String(), -1) {
		out[m[1]] = m[2]
	}
	if len(out) == 0 {
		t.Fatalf("eyeflow %s --help listed no flags:\n%s", strings.Join(words, " "), usage.String())
	}
	return out
}

// subcommands with a verb of their own.
var verbs = map[string]bool{"topology": true, "buckets": true, "split": true, "model": true}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Command     []string       `yaml:"command"`
	Entrypoint  []string       `yaml:"entrypoint"`
	Environment map[string]any `yaml:"environment"`
	Ports       []string       `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
	Restart     string         `yaml:"restart"`
	Deploy      struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	Healthcheck struct {
		Test    []string `yaml:"test"`
		Disable bool     `yaml:"disable"`
	} `yaml:"healthcheck"`
}

func readCompose(t *testing.T) map[string]composeService {
	t.Helper()
	data, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return f.Services
}

// eyeflowCommands returns the eyeflow command lines a service runs.
func eyeflowCommands(t *testing.T, name string, s composeService) [][]string {
	t.Helper()
	if len(s.Entrypoint) == 0 {
		return [][]string{s.Command}
	}
	if len(s.Entrypoint) != 3 || s.Entrypoint[0] != "/bin/sh" || s.Entrypoint[1] != "-c" {
		t.Fatalf("service %s: entrypoint %v: want eyeflow's, or /bin/sh -c \"eyeflow ... && eyeflow ...\"", name, s.Entrypoint)
	}
	var out [][]string
	for _, part := range strings.Split(s.Entrypoint[2], "&&") {
		words := strings.Fields(part)
		if len(words) < 2 || words[0] != "eyeflow" {
			t.Fatalf("service %s: %q is not an eyeflow command", name, part)
		}
		out = append(out, words[1:])
	}
	return out
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}

// TestComposeIsConsistent checks compose.yaml against the binary: every
// eyeflow service runs a real subcommand with real flags, sets only
// EYEFLOW_* variables that are flags of that subcommand, publishes and
// health-checks the port its --http names, and every build has its
// Dockerfile; Prometheus scrapes the same services and ports.
func TestComposeIsConsistent(t *testing.T) {
	services := readCompose(t)
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	httpPorts := map[string]string{} // eyeflow service -> its HTTP port
	for name, s := range services {
		t.Run(name, func(t *testing.T) {
			if s.Restart == "" {
				t.Errorf("no restart policy")
			}
			if s.Build != nil {
				ctxDir, dockerfile := ".", "Dockerfile"
				switch b := s.Build.(type) {
				case string:
					ctxDir = b
				case map[string]any:
					if c, ok := b["context"].(string); ok {
						ctxDir = c
					}
					if d, ok := b["dockerfile"].(string); ok {
						dockerfile = d
					}
				}
				if _, err := os.Stat(filepath.Join("../..", ctxDir, dockerfile)); err != nil {
					t.Errorf("build: %v", err)
				}
			}
			for _, v := range s.Volumes {
				if src, _, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(src, "./") {
					if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
						t.Errorf("volume %s: %v", v, err)
					}
				}
			}
			if s.Image != "eyeflow:latest" {
				if s.Healthcheck.Disable || len(s.Healthcheck.Test) == 0 {
					t.Errorf("no healthcheck")
				}
				serverPasswords := natsServerPasswords(t)
				for k := range s.Environment {
					if strings.HasPrefix(k, "EYEFLOW_") && !(strings.HasPrefix(s.Image, "nats:") && serverPasswords[k]) {
						t.Errorf("%s set on a service that is not eyeflow", k)
					}
				}
				if strings.HasPrefix(s.Image, "nats:") {
					// The server resolves every password auth.conf names.
					for k := range serverPasswords {
						if _, ok := s.Environment[k]; !ok {
							t.Errorf("nats server lacks %s, which deploy/nats/auth.conf needs", k)
						}
					}
				}
				return
			}
			cmds := eyeflowCommands(t, name, s)
			envs := map[string]bool{}
			var httpAddr string
			for _, args := range cmds {
				if len(args) == 0 || !slices.Contains(names, args[0]) {
					t.Fatalf("command %v: not an eyeflow subcommand (%v)", args, names)
				}
				words := args[:1]
				if verbs[args[0]] {
					words = args[:2]
				}
				flags := commandFlags(t, words)
				for _, env := range flags {
					envs[env] = true
				}
				rest := args[len(words):]
				for i := 0; i < len(rest); i++ {
					a := rest[i]
					if !strings.HasPrefix(a, "--") {
						continue // a flag's value
					}
					flag, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
					if _, ok := flags[flag]; !ok {
						t.Errorf("eyeflow %s has no flag --%s", strings.Join(words, " "), flag)
					}
					if !hasValue && i+1 < len(rest) && !strings.HasPrefix(rest[i+1], "--") {
						value = rest[i+1]
					}
					if flag == "http" {
						httpAddr = value
					}
					if flag == "metrics-urls" {
						for _, u := range strings.Split(value, ",") {
							p, err := url.Parse(u)
							if err != nil {
								t.Fatal(err)
							}
							if _, ok := services[p.Hostname()]; !ok {
								t.Errorf("--metrics-urls names %s, which is not a service", p.Hostname())
							}
						}
					}
				}
			}
			for k, v := range s.Environment {
				if !strings.HasPrefix(k, "EYEFLOW_") {
					continue
				}
				if !envs[k] {
					t.Errorf("%s is not the variable of any flag of %v", k, cmds)
				}
				if k == "EYEFLOW_HTTP" && httpAddr == "" {
					httpAddr, _ = v.(string)
				}
			}
			if s.Restart == "no" && len(s.Healthcheck.Test) == 0 {
				return // a one-shot job: done is its health
			}
			if s.Healthcheck.Disable {
				if httpAddr != "" && cmds[0][0] != "reconcile" {
					t.Errorf("a service with an HTTP endpoint has no healthcheck")
				}
				return
			}
			if httpAddr == "" {
				t.Fatalf("no --http or EYEFLOW_HTTP, but a healthcheck")
			}
			port := portOf(t, httpAddr)
			httpPorts[name] = port
			hc := strings.Join(s.Healthcheck.Test, " ")
			if !strings.Contains(hc, "127.0.0.1:"+port+"/readyz") {
				t.Errorf("healthcheck %q does not ask /readyz on port %s", hc, port)
			}
			for _, p := range s.Ports {
				if parts := strings.Split(p, ":"); parts[len(parts)-1] != port {
					t.Errorf("publishes %s, but serves HTTP on %s", p, port)
				}
			}
		})
	}

	// Prometheus scrapes every eyeflow service that serves HTTP, on its port.
	data, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName      string `yaml:"job_name"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &prom); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]string{}
	for _, sc := range prom.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				scraped[n] = strconv.Itoa(d.Port)
			}
		}
	}
	for svc, port := range httpPorts {
		if scraped[svc] != port {
			t.Errorf("prometheus.yml scrapes %s on %q, it serves on %s", svc, scraped[svc], port)
		}
	}
	for svc := range scraped {
		if _, ok := httpPorts[svc]; !ok {
			t.Errorf("prometheus.yml scrapes %s, which is not an eyeflow service with HTTP", svc)
		}
	}
}

// TestDockerfilesSetRealVariables: every EYEFLOW_* variable an image sets
// is a flag's variable of some command.
func TestDockerfilesSetRealVariables(t *testing.T) {
	all := map[string]bool{}
	for _, words := range [][]string{{"up"}, {"classifier"}, {"dashboard"}} {
		for _, env := range commandFlags(t, words) {
			all[env] = true
		}
	}
	envRe := regexp.MustCompile(`\b(EYEFLOW_[A-Z0-9_]+)=`)
	for _, f := range []string{"Dockerfile", "Dockerfile.gpu"} {
		data, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if !strings.Contains(text, "USER ") || strings.Count(text, "FROM ") < 2 {
			t.Errorf("%s: want a multi-stage build with a non-root USER", f)
		}
		found := envRe.FindAllStringSubmatch(text, -1)
		if len(found) == 0 {
			t.Errorf("%s sets no EYEFLOW_ORT_LIB", f)
		}
		for _, m := range found {
			if !all[m[1]] {
				t.Errorf("%s sets %s, which no flag reads", f, m[1])
			}
		}
	}
}

// natsServerPasswords are the $EYEFLOW_NATS_PASSWORD_* variables that
// deploy/nats/auth.conf makes the NATS server read.
func natsServerPasswords(t *testing.T) map[string]bool {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join("../..", "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$(EYEFLOW_NATS_PASSWORD_[A-Z]+)`).FindAllSubmatch(conf, -1) {
		out[string(m[1])] = true
	}
	if len(out) == 0 {
		t.Fatal("deploy/nats/auth.conf names no password variable")
	}
	return out
}

// consumersOf are the catalogue's durable consumers an eyeflow command
// reads (the classifier one per env of --envs; optional ones only when
// the flag that turns them on is given).
func consumersOf(t *testing.T, args []string) []string {
	t.Helper()
	st, ok := pipeline.Find(args[0])
	if !ok {
		return nil
	}
	var envs []string
	if i := slices.Index(args, "--envs"); i >= 0 && i+1 < len(args) {
		envs = strings.Split(args[i+1], ",")
	}
	var out []string
	for _, ref := range stageNeeds(st.Name, envs) {
		out = append(out, ref.name)
	}
	return out
}

// TestComposeReadsEveryConsumer: every durable consumer of the topology is
// read by a compose service, logged in as a NATS user that may fetch from
// it. A consumer nobody reads lags forever, and what it stands for (the
// upload ledger: which objects already have an event) never happens.
func TestComposeReadsEveryConsumer(t *testing.T) {
	services := readCompose(t)
	users := natsauth.Users()
	read := map[string]string{} // consumer -> service
	for name, s := range services {
		if s.Image != "eyeflow:latest" {
			continue
		}
		user, _ := s.Environment["EYEFLOW_NATS_USER"].(string)
		for _, args := range eyeflowCommands(t, name, s) {
			for _, c := range consumersOf(t, args) {
				read[c] = name
				var spec bus.ConsumerSpec
				spec, _ = pipeline.ConsumerSpec(bus.DefaultOptions(), c)
				next := "$JS.API.CONSUMER.MSG.NEXT." + spec.Stream + "." + c
				ok := false
				for _, u := range users {
					if u.Name == user && (slices.Contains(u.Publish, next) || slices.Contains(u.Publish, ">")) {
						ok = true
					}
				}
				if !ok {
					t.Errorf("service %s reads consumer %s as NATS user %q, which may not fetch from it", name, c, user)
				}
			}
		}
	}
	for _, cs := range pipeline.Topology(bus.DefaultOptions()).Consumers {
		if _, ok := read[cs.Config.Durable]; !ok {
			t.Errorf("no compose service reads consumer %s on %s: its lag grows forever", cs.Config.Durable, cs.Stream)
		}
	}
}

// TestComposeRunsEveryStage: compose.yaml runs every stage of the catalogue
// as its own command, logged in as the stage's own NATS user, and runs no
// stage the catalogue lacks.
func TestComposeRunsEveryStage(t *testing.T) {
	services := readCompose(t)
	ran := map[string]bool{}
	for name, s := range services {
		if s.Image != "eyeflow:latest" {
			continue
		}
		user, _ := s.Environment["EYEFLOW_NATS_USER"].(string)
		for _, args := range eyeflowCommands(t, name, s) {
			if _, ok := pipeline.Find(args[0]); !ok {
				continue
			}
			ran[args[0]] = true
			if want := natsauth.UserName(args[0]); user != want {
				t.Errorf("service %s runs stage %s as NATS user %q, want %q", name, args[0], user, want)
			}
		}
	}
	for _, st := range pipeline.Stages() {
		if !ran[st.Name] {
			t.Errorf("no compose service runs stage %s (`eyeflow %s`)", st.Name, st.Name)
		}
	}
}

// TestEveryStageHasItsCommand: each stage of the catalogue is an eyeflow
// command with flags of its own, and `eyeflow up` runs it.
func TestEveryStageHasItsCommand(t *testing.T) {
	runs := stageCmds()
	for _, st := range pipeline.Stages() {
		c, ok := runs[st.Name]
		if !ok || c.run == nil {
			t.Errorf("stage %s: no command", st.Name)
			continue
		}
		if c.up == nil && st.Name != schemas.StageIngest {
			t.Errorf("stage %s: eyeflow up cannot build it", st.Name)
		}
		var out bytes.Buffer
		if err := run(context.Background(), []string{st.Name, "--help"}, &out, io.Discard); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("eyeflow %s --help: %v", st.Name, err)
		}
		if st.Name != schemas.StageIngest && !slices.Contains(processorNames(), st.Name) {
			t.Errorf("eyeflow up cannot run stage %s", st.Name)
		}
	}
	if len(runs) != len(pipeline.Stages()) {
		t.Errorf("%d stage commands for %d stages in the catalogue", len(runs), len(pipeline.Stages()))
	}
}

// TestEnvExampleSetsWhatComposeRequires: every variable compose.yaml
// refuses to start without (${VAR:?...}) is in .env.example, and so is the
// password of every NATS user natsauth declares (one per stage of the
// catalogue, MinIO and admin): copying .env.example gives a deployment
// that starts.
func TestEnvExampleSetsWhatComposeRequires(t *testing.T) {
	compose, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, line := range strings.Split(string(example), "\n") {
		if k, _, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			set[k] = true
		}
	}
	required := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+):\?`).FindAllStringSubmatch(string(compose), -1) {
		required[m[1]] = true
	}
	for _, u := range natsauth.Users() {
		required[u.PasswordEnv] = true
	}
	if len(required) < 10 {
		t.Fatalf("found only %d required variables", len(required))
	}
	for k := range required {
		if !set[k] {
			t.Errorf(".env.example does not set %s, which compose.yaml or a NATS user needs", k)
		}
	}
}
