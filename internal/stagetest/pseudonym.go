package stagetest

import (
	"testing"

	"eyeflow/security/pseudonym"
)

// Patients is a keyed pseudonym rule under a fresh random key and the given
// split salt: what a deployment's stages get from its record, for tests
// that run resize or the splitter (which have no default rule).
func Patients(t testing.TB, salt string) pseudonym.Rule {
	t.Helper()
	k, err := pseudonym.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	r, err := pseudonym.Keyed(k, salt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
