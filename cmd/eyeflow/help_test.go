package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from what the commands print")

// clearEyeflowEnv unsets every EYEFLOW_* variable for the test, so that
// defaults and messages do not depend on the machine's environment.
func clearEyeflowEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "EYEFLOW_") {
			t.Setenv(k, v) // restored after the test
			os.Unsetenv(k)
		}
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the command prints (go test -run %s -update rewrites it after review):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// commandLines lists every command and subcommand as its words.
func commandLines() [][]string {
	var out [][]string
	gs := groups()
	for _, c := range commands() {
		subs, ok := gs[c.name]
		if !ok {
			out = append(out, []string{c.name})
			continue
		}
		out = append(out, []string{c.name})
		for _, s := range subs {
			out = append(out, []string{c.name, s.name})
		}
	}
	return out
}

// TestHelpGolden: `--help` on every command and subcommand (and `eyeflow
// --help`, `eyeflow help model push`) prints what it does and its flags on
// standard output and exits 0; the text is kept in testdata/help/.
func TestHelpGolden(t *testing.T) {
	clearEyeflowEnv(t)
	lines := append([][]string{{}}, commandLines()...)
	seen := map[string]bool{}
	for _, words := range lines {
		name := strings.Join(words, "_")
		if name == "" {
			name = "eyeflow"
		}
		t.Run(name, func(t *testing.T) {
			for _, h := range []string{"--help", "-h"} {
				var out, errOut bytes.Buffer
				err := run(context.Background(), append(slices.Clone(words), h), &out, &errOut)
				if code := exitCode(err); code != 0 {
					t.Fatalf("eyeflow %s %s: exit %d (%v)", strings.Join(words, " "), h, code, err)
				}
				if errOut.Len() != 0 {
					t.Errorf("eyeflow %s %s wrote to stderr: %s", strings.Join(words, " "), h, errOut.String())
				}
				if !strings.HasPrefix(out.String(), "usage: eyeflow") && !strings.HasPrefix(out.String(), "eyeflow: ") {
					t.Errorf("eyeflow %s %s does not start with its usage:\n%s", strings.Join(words, " "), h, out.String())
				}
				if h == "--help" {
					golden(t, filepath.Join("help", name+".golden"), out.Bytes())
					seen[name+".golden"] = true
				}
			}
			if len(words) > 0 {
				// `eyeflow help <command...>` is the same text.
				var out, direct bytes.Buffer
				if err := run(context.Background(), append([]string{"help"}, words...), &out, io.Discard); exitCode(err) != 0 {
					t.Fatalf("eyeflow help %s: %v", strings.Join(words, " "), err)
				}
				_ = run(context.Background(), append(slices.Clone(words), "--help"), &direct, io.Discard)
				if out.String() != direct.String() {
					t.Errorf("eyeflow help %s differs from --help", strings.Join(words, " "))
				}
			}
		})
	}
	// No golden file for a command that no longer exists.
	if !*update {
		files, _ := filepath.Glob(filepath.Join("testdata", "help", "*.golden"))
		for _, f := range files {
			if !seen[filepath.Base(f)] {
				t.Errorf("%s is the help of no command: delete it", f)
			}
		}
	}
}

// TestUsageErrorsGolden: a wrong command line is one line that names what
// is wrong (the unknown command, subcommand or flag, the missing required
// flag or argument), exits 2 and prints no usage. Every command gets an
// unknown flag; the lines are kept in testdata/usage-errors.golden.
func TestUsageErrorsGolden(t *testing.T) {
	clearEyeflowEnv(t)
	cases := [][]string{
		{"frobnicate"},
		{"topolgy", "apply"},
		{"topology", "aply"},
		{"buckets", "create"},
		{"split", "explian"},
		{"model", "pull"},
		{"model", "--nats", "nats://x:4222", "list"},
		{"predict", "a.jpg"},
		{"predict", "--model", "m"},
		{"model", "synth"},
		{"model", "push", "dir"},
		{"model", "push", "dir", "--name", "fundus"},
		{"model", "push", "--name", "fundus", "--version", "v1"},
		{"model", "push", "a", "b", "--name", "fundus", "--version", "v1"},
		{"model", "promote", "fundus", "v1"},
		{"model", "promote", "--env", "canary", "fundus"},
		{"model", "promote", "--env", "prod", "fundus", "v1"},
		{"model", "rollback"},
		{"model", "list", "extra"},
		{"split", "export"},
		{"split", "explain"},
		{"split", "report", "extra"},
		{"demo-data"},
		{"preprocess", "in.jpg"},
		{"preprocess", "in.jpg", "out.jpg"},
		{"put"},
		{"status", "extra"},
		{"resize", "--max-pixels"},
		{"resize", "--max-pixels", "many"},
		{"up", "--nats-password", "hunter2"},
	}
	for _, words := range commandLines() {
		if _, group := groups()[words[0]]; group && len(words) == 1 {
			cases = append(cases, []string{words[0]})
			continue
		}
		cases = append(cases, append(slices.Clone(words), "--no-such-flag"))
	}
	var b strings.Builder
	for _, args := range cases {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		code := exitCode(err)
		if err == nil {
			t.Errorf("eyeflow %s: no error", strings.Join(args, " "))
			continue
		}
		if out.Len() != 0 {
			t.Errorf("eyeflow %s wrote to stdout: %s", strings.Join(args, " "), out.String())
		}
		msg := errorLine(err)
		if msg == "" {
			// A group without its verb prints its verbs (a usage).
			msg = "(usage) " + strings.SplitN(errOut.String(), "\n", 2)[0]
		} else if errOut.Len() != 0 {
			t.Errorf("eyeflow %s printed usage as well as the error: %s", strings.Join(args, " "), errOut.String())
		}
		if strings.Count(msg, "\n") != 0 {
			t.Errorf("eyeflow %s: the error is not one line: %q", strings.Join(args, " "), msg)
		}
		fmt.Fprintf(&b, "$ eyeflow %s\nexit %d: %s\n", strings.Join(args, " "), code, msg)
	}
	golden(t, "usage-errors.golden", []byte(b.String()))
}

// TestEveryFlagHasItsVariable: the help lists every flag with its
// variable; no two flags of a command share a variable, and deprecated
// names have none of their own.
func TestEveryFlagHasItsVariable(t *testing.T) {
	clearEyeflowEnv(t)
	for _, words := range commandLines() {
		if _, group := groups()[words[0]]; group && len(words) == 1 {
			continue
		}
		flags := commandFlags(t, words)
		byEnv := map[string][]string{}
		for f, env := range flags {
			if env != envName(f) {
				t.Errorf("eyeflow %s --%s reads $%s, want $%s", strings.Join(words, " "), f, env, envName(f))
			}
			byEnv[env] = append(byEnv[env], f)
		}
		for env, fs := range byEnv {
			if len(fs) > 1 {
				sort.Strings(fs)
				t.Errorf("eyeflow %s: $%s is read by %v", strings.Join(words, " "), env, fs)
			}
		}
	}
}

// TestSameSettingSameName: a setting several commands take has one name
// (and so one variable) everywhere.
func TestSameSettingSameName(t *testing.T) {
	clearEyeflowEnv(t)
	olds := map[string]string{"salt": "split-salt", "salt-version": "split-salt-version", "prefix": "split-prefix",
		"train-fraction": "split-train-fraction", "key-pattern": "split-key-pattern", "interval": "reconcile-interval", "engine": "train-engine"}
	for _, words := range commandLines() {
		if _, group := groups()[words[0]]; group && len(words) == 1 {
			continue
		}
		flags := commandFlags(t, words)
		for old, cur := range olds {
			if _, ok := flags[old]; ok && words[0] != "put" {
				t.Errorf("eyeflow %s names a setting --%s: the name everywhere else is --%s", strings.Join(words, " "), old, cur)
			}
		}
	}
	// The old names still work, with a warning.
	var errOut bytes.Buffer
	missing := filepath.Join(t.TempDir(), "none.jpg")
	if err := run(context.Background(), []string{"split", "explain", "--salt", "s", "--json", missing}, io.Discard, &errOut); err == nil || errors.Is(err, errUsage) {
		t.Fatalf("split explain with a deprecated flag and a missing file: %v", err)
	}
	if !strings.Contains(errOut.String(), "--salt is deprecated") || !strings.Contains(errOut.String(), "--split-salt") {
		t.Errorf("a deprecated flag said %q", errOut.String())
	}
}
