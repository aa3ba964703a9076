package pseudonym_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"eyeflow/security/pseudonym"
)

const defaultSalt = "eyeflow-split" // the split salt's default, then and now

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func mustKey(t *testing.T) pseudonym.Key {
	t.Helper()
	k, err := pseudonym.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKeyed(t *testing.T, k pseudonym.Key, salt string) pseudonym.Rule {
	t.Helper()
	r, err := pseudonym.Keyed(k, salt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLegacyGolden: the legacy rule gives exactly the hashes the splitter's
// PatientHash gave before pseudonyms had their own package (values computed
// with that code), so a deployment that keeps it keeps its splits.
func TestLegacyGolden(t *testing.T) {
	for _, tt := range []struct{ salt, id, want string }{
		{"eyeflow-split", "PAT-4711", "0d8807b3ec0a20c59477d48b82d839d76d3bbe1c97e43b721facf5b3908b9c75"},
		{"eyeflow-split", "PAT-9001", "328effc508e8d665eeb61c7cbf2279cd84443efb59e6020222000b85bda78e79"},
		{"eyeflow-split", " P12 ", "5d6e819117a36584e0bb50f6a8fbd24dd1729f15b2c378e7ca81f58eda81be3c"},
		{"eyeflow-split", "P12", "5d6e819117a36584e0bb50f6a8fbd24dd1729f15b2c378e7ca81f58eda81be3c"},
		{"a private salt", "PAT-4711", "99b16f5a962007d170122f68feefb2615b9a328dcf100977937d48ed532d06da"},
		{"eyeflow-split", "Ünïcode-7", "b8272e6c72115673044aef1306779fac00a7d437ccf644e635809de314b86d6e"},
		{"s", "p12", "ad0e051483b0f3c2b359d92481b0f1cf079d0eea8079aae58572b3403166b71d"},
		{"eyeflow-split", " \t", ""},
	} {
		t.Run(tt.salt+"/"+tt.id, func(t *testing.T) {
			r, err := pseudonym.Legacy(tt.salt)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Of(tt.id); got != tt.want {
				t.Fatalf("Legacy(%q).Of(%q) = %s, want %s", tt.salt, tt.id, got, tt.want)
			}
		})
	}
}

// TestKeyed: one key and one id give one pseudonym, in the published shape;
// another key, id or salt gives another; ids are trimmed, case is kept.
func TestKeyed(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	r := mustKeyed(t, k1, defaultSalt)
	p := r.Of("PAT-4711")
	if !hexSHA256.MatchString(p) {
		t.Fatalf("pseudonym %q is not lowercase hex sha256", p)
	}
	same, err := pseudonym.ParseKey(k1.Hex())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		rule pseudonym.Rule
		id   string
		same bool
	}{
		{"same key, same id", mustKeyed(t, k1, defaultSalt), "PAT-4711", true},
		{"same key read back from its hex", mustKeyed(t, same, defaultSalt), "PAT-4711", true},
		{"surrounding space", r, "  PAT-4711\t", true},
		{"another key", mustKeyed(t, k2, defaultSalt), "PAT-4711", false},
		{"another salt", mustKeyed(t, k1, "another salt"), "PAT-4711", false},
		{"another id", r, "PAT-9001", false},
		{"case kept", r, "pat-4711", false},
		{"legacy rule", func() pseudonym.Rule { l, _ := pseudonym.Legacy(defaultSalt); return l }(), "PAT-4711", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rule.Of(tt.id); (got == p) != tt.same {
				t.Fatalf("Of(%q) = %s, the first pseudonym %s: same %v, want %v", tt.id, got, p, got == p, tt.same)
			}
		})
	}
	if r.Of("") != "" || r.Of(" ") != "" {
		t.Error("an empty id has a pseudonym")
	}
}

// TestGuessingFails is the attack of issue 23: with the published pseudonym
// of a guessable id and a candidate list that holds it, hashing the
// candidates under the constant default salt recovered the id. Under a
// keyed rule no constant (the default salt, an empty salt, the legacy rule
// with any of them, the key-less MAC) recovers it.
func TestGuessingFails(t *testing.T) {
	r := mustKeyed(t, mustKey(t), defaultSalt)
	var candidates []string
	for i := range 10000 {
		candidates = append(candidates, fmt.Sprintf("PAT-%04d", i))
	}
	for _, truth := range []string{"PAT-4711", "PAT-9001"} {
		if !contains(candidates, truth) {
			candidates = append(candidates, truth)
		}
		published := r.Of(truth)
		var guesses []pseudonym.Rule
		for _, salt := range []string{defaultSalt, "", "eyeflow", "change-me", "v1", "1"} {
			if l, err := pseudonym.Legacy(salt); err == nil {
				guesses = append(guesses, l)
			}
			// Keyed with a guessable key: the all-zero key, the salt as key.
			for _, kh := range []string{strings.Repeat("00", pseudonym.KeySize), fmt.Sprintf("%064x", []byte(salt))} {
				if k, err := pseudonym.ParseKey(kh[:2*pseudonym.KeySize]); err == nil {
					guesses = append(guesses, mustKeyed(t, k, salt))
				}
			}
		}
		for _, g := range guesses {
			for _, c := range candidates {
				if g.Of(c) == published {
					t.Fatalf("%s recovered %s from its pseudonym by trying %d candidates", g, c, len(candidates))
				}
			}
		}
	}
	// The same search does recover an id under the legacy rule and the
	// default salt: the search above is one that would have worked.
	legacy, _ := pseudonym.Legacy(defaultSalt)
	if p := legacy.Of("PAT-4711"); !contains(candidates, "PAT-4711") || legacy.Of(candidates[4711]) != p {
		t.Fatal("the control search does not recover a legacy pseudonym")
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestNoRuleWithoutSecret: no key, no rule; no salt, no legacy rule; a
// malformed key is refused; nothing prints the key.
func TestNoRuleWithoutSecret(t *testing.T) {
	if _, err := pseudonym.Keyed(pseudonym.Key{}, defaultSalt); err == nil {
		t.Error("a keyed rule without a key")
	}
	if _, err := pseudonym.Legacy(""); err == nil {
		t.Error("a legacy rule without a salt")
	}
	if (pseudonym.Rule{}).Valid() {
		t.Error("the zero rule is valid")
	}
	for _, s := range []string{"", "zz", strings.Repeat("ab", pseudonym.KeySize-1)} {
		if _, err := pseudonym.ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
	k := mustKey(t)
	r := mustKeyed(t, k, defaultSalt)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", r, r, r, k), fmt.Sprintf("%#v", k)} {
		if strings.Contains(s, k.Hex()) {
			t.Errorf("the key is printed: %s", s)
		}
	}
	if k2 := mustKey(t); k2.Hex() == k.Hex() {
		t.Error("two generated keys are equal")
	}
}
