package natsauth_test

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"eyeflow/security/natsauth"

	"go.yaml.in/yaml/v3"
)

const checkedInHelm = "../../deploy/helm/nats-values.yaml"

// TestCheckedInHelmValuesMatch keeps deploy/helm/nats-values.yaml, the NATS
// chart's values, in sync with the table, as TestCheckedInConfigMatches
// does auth.conf (-update rewrites it).
func TestCheckedInHelmValuesMatch(t *testing.T) {
	var b bytes.Buffer
	if err := natsauth.RenderHelmValues(&b, natsauth.Users(), natsauth.HelmSecret); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(checkedInHelm, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(checkedInHelm)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("%s is out of date: run `go test ./security/natsauth -run TestCheckedInHelmValuesMatch -update`", checkedInHelm)
	}
}

// helmValues is the part of the NATS chart's values the renderer writes.
type helmValues struct {
	Config struct {
		Merge struct {
			Authorization struct {
				Users []struct {
					User        string `yaml:"user"`
					Password    string `yaml:"password"`
					Permissions struct {
						Publish   struct{ Allow, Deny []string } `yaml:"publish"`
						Subscribe struct{ Allow []string }       `yaml:"subscribe"`
					} `yaml:"permissions"`
				} `yaml:"users"`
			} `yaml:"authorization"`
		} `yaml:"merge"`
		JetStream struct {
			Enabled   bool `yaml:"enabled"`
			FileStore struct {
				Enabled bool `yaml:"enabled"`
				PVC     struct {
					Enabled bool `yaml:"enabled"`
				} `yaml:"pvc"`
			} `yaml:"fileStore"`
		} `yaml:"jetstream"`
	} `yaml:"config"`
	Container struct {
		Env map[string]struct {
			ValueFrom struct {
				SecretKeyRef struct{ Name, Key string } `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
	} `yaml:"container"`
}

// TestHelmValuesAreTheTable: the YAML parses back to exactly the table's
// users, permissions and password variables, each variable from its own key
// of the Secret, on JetStream file storage with volumes.
func TestHelmValuesAreTheTable(t *testing.T) {
	var b bytes.Buffer
	if err := natsauth.RenderHelmValues(&b, natsauth.Users(), "s3cret-name"); err != nil {
		t.Fatal(err)
	}
	var v helmValues
	dec := yaml.NewDecoder(&b)
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	js := v.Config.JetStream
	if !js.Enabled || !js.FileStore.Enabled || !js.FileStore.PVC.Enabled {
		t.Errorf("JetStream %+v: want file storage on persistent volumes", js)
	}
	users := natsauth.Users()
	got := v.Config.Merge.Authorization.Users
	if len(got) != len(users) {
		t.Fatalf("%d users, want %d", len(got), len(users))
	}
	for i, u := range users {
		g := got[i]
		if g.User != u.Name || g.Password != "<< $"+u.PasswordEnv+" >>" {
			t.Errorf("user %d: %q password %q, want %q << $%s >>", i, g.User, g.Password, u.Name, u.PasswordEnv)
		}
		if !slices.Equal(g.Permissions.Publish.Allow, u.Publish) || !slices.Equal(g.Permissions.Publish.Deny, u.PublishDeny) ||
			!slices.Equal(g.Permissions.Subscribe.Allow, u.Subscribe) {
			t.Errorf("user %s: permissions differ from the table", u.Name)
		}
		env, ok := v.Container.Env[u.PasswordEnv]
		if !ok || env.ValueFrom.SecretKeyRef.Name != "s3cret-name" || env.ValueFrom.SecretKeyRef.Key != u.PasswordEnv {
			t.Errorf("user %s: the server's %s is %+v, want key %s of the Secret", u.Name, u.PasswordEnv, env, u.PasswordEnv)
		}
	}
	if len(v.Container.Env) != len(users) {
		t.Errorf("%d variables for %d users", len(v.Container.Env), len(users))
	}
	if strings.Contains(b.String(), "password: \"pw") {
		t.Error("a literal password in the values")
	}
}
