package pseudonym

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Schemes name a rule where a deployment records it.
const (
	// SchemeKeyed is HMAC-SHA256 under the deployment's secret key.
	SchemeKeyed = "hmac-sha256"
	// SchemeLegacy is the salted SHA-256 of deployments made before keys.
	SchemeLegacy = "salted-sha256"
)

// KeySize is the length of a key in bytes: HMAC-SHA256's block-sized
// output, so the key is as strong as the MAC.
const KeySize = 32

// Field values fed to the hash before the id. They are frozen: they are
// what the splitter fed its split hash when it owned patient hashing
// (its split function's name and the "patient" key kind), and a legacy
// pseudonym must stay exactly what it was even if the split function
// changes name.
const (
	legacyFunc = "sha256-threshold-v1"
	kindField  = "patient"
)

// Key is a deployment's secret pseudonym key. It prints redacted, so a
// logged rule or record never shows it; Hex is for storing it.
type Key struct {
	b   [KeySize]byte
	set bool
}

// NewKey returns a random key.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k.b[:]); err != nil {
		return Key{}, fmt.Errorf("pseudonym: generate a key: %w", err)
	}
	k.set = true
	return k, nil
}

// ParseKey reads a key written by Hex.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := hex.DecodeString(strings.TrimSpace(s))
	switch {
	case err != nil:
		return Key{}, errors.New("pseudonym: key is not hex") // the value is secret: not in the error
	case len(b) != KeySize:
		return Key{}, fmt.Errorf("pseudonym: key has %d bytes, want %d", len(b), KeySize)
	}
	copy(k.b[:], b)
	k.set = true
	return k, nil
}

// Hex is the key as lowercase hex, for the deployment record.
func (k Key) Hex() string { return hex.EncodeToString(k.b[:]) }

// IsZero reports a key never generated or parsed.
func (k Key) IsZero() bool { return !k.set }

// String never shows the key.
func (k Key) String() string { return "(redacted pseudonym key)" }

// GoString never shows the key, also under %#v.
func (k Key) GoString() string { return k.String() }

// Rule turns patient ids into pseudonyms. The zero Rule is no rule: a stage
// given one refuses to start (Valid), and Of panics.
type Rule struct {
	scheme string
	key    Key
	salt   string
}

// Keyed is the rule of a deployment with a key. salt is the split salt
// (--split-salt): it is fed to the MAC as well, so that changing it still
// reshuffles patients' splits, as it always did, and the pseudonym keeps the
// salt version recorded beside it meaningful.
func Keyed(key Key, salt string) (Rule, error) {
	if key.IsZero() {
		return Rule{}, errors.New("pseudonym: keyed rule without a key")
	}
	return Rule{scheme: SchemeKeyed, key: key, salt: salt}, nil
}

// Legacy is the salted SHA-256 of deployments made before keys: only for
// one whose record says so, never for a new deployment.
func Legacy(salt string) (Rule, error) {
	if salt == "" {
		return Rule{}, errors.New("pseudonym: legacy rule without a salt")
	}
	return Rule{scheme: SchemeLegacy, salt: salt}, nil
}

// Scheme is SchemeKeyed or SchemeLegacy ("" for the zero Rule).
func (r Rule) Scheme() string { return r.scheme }

// Salt is the split salt the rule was made with: a stage checks it is its
// own, or its patients would be keyed under another salt than its splits.
func (r Rule) Salt() string { return r.salt }

// Valid reports a rule made by Keyed or Legacy.
func (r Rule) Valid() bool { return r.scheme != "" }

// String names the rule without its key.
func (r Rule) String() string {
	if !r.Valid() {
		return "no pseudonym rule"
	}
	return r.scheme
}

// GoString never shows the key, also under %#v.
func (r Rule) GoString() string { return r.String() }

// Of is the pseudonym of a patient id: the id with surrounding space
// trimmed (case is kept: it may be meaningful in a hospital's ids), fed
// length-prefixed after the frozen fields and the salt to HMAC-SHA256 under
// the key (Keyed) or to SHA-256 (Legacy), as lowercase hex. Empty ids give
// "".
func (r Rule) Of(patientID string) string {
	p := strings.TrimSpace(patientID)
	if p == "" {
		return ""
	}
	var h hash.Hash
	switch r.scheme {
	case SchemeKeyed:
		h = hmac.New(sha256.New, r.key.b[:])
	case SchemeLegacy:
		h = sha256.New()
	default:
		// A stage validates its rule at start; reaching here is a wiring bug.
		panic("pseudonym: Of on the zero Rule")
	}
	// Length prefixes, so that no two different (salt, id) pairs feed the
	// hash the same bytes.
	var n [binary.MaxVarintLen64]byte
	for _, s := range []string{legacyFunc, r.salt, kindField, p} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))
}
