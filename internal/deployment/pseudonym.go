package deployment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"eyeflow/bus"
	"eyeflow/security/pseudonym"

	"github.com/nats-io/nats.go/jetstream"
)

// PseudonymKey is the key of the patient pseudonym record: how the
// deployment turns patient ids into what its events carry, and its secret
// key. It is written once, at the deployment's first start, and never
// rewritten (a new key would move every patient's pseudonym and split).
const PseudonymKey = "pseudonym"

// PseudonymRecord is the deployment's patient pseudonym rule.
type PseudonymRecord struct {
	// Scheme is pseudonym.SchemeKeyed or pseudonym.SchemeLegacy.
	Scheme string `json:"scheme"`
	// Key is the keyed scheme's secret key, hex (pseudonym.Key.Hex).
	Key string `json:"key,omitempty"`
	// Why says why a legacy deployment keeps the salted hash.
	Why        string    `json:"why,omitempty"`
	RecordedBy string    `json:"recorded_by"`
	Time       time.Time `json:"time"`
}

// String describes the record without its key, for logs.
func (r PseudonymRecord) String() string {
	s := fmt.Sprintf("%s (recorded by %s at %s)", r.Scheme, r.RecordedBy, r.Time.Format(time.RFC3339))
	if r.Why != "" {
		s += ": " + r.Why
	}
	return s
}

// GoString never shows the key, also under %#v.
func (r PseudonymRecord) GoString() string { return r.String() }

// Rule is the record's rule for a stage with the given split salt.
func (r PseudonymRecord) Rule(splitSalt string) (pseudonym.Rule, error) {
	switch r.Scheme {
	case pseudonym.SchemeKeyed:
		k, err := pseudonym.ParseKey(r.Key)
		if err != nil {
			return pseudonym.Rule{}, fmt.Errorf("kv %s key %s: %w", KV, PseudonymKey, err)
		}
		return pseudonym.Keyed(k, splitSalt)
	case pseudonym.SchemeLegacy:
		// The salt was never recorded: it is the stages' --split-salt, as it
		// was when this deployment published its first pseudonyms.
		return pseudonym.Legacy(splitSalt)
	}
	return pseudonym.Rule{}, fmt.Errorf("kv %s key %s: unknown pseudonym scheme %q", KV, PseudonymKey, r.Scheme)
}

// ErrNoPseudonym is the error of a stage started on a deployment that has
// no pseudonym record yet.
var ErrNoPseudonym = errors.New("the deployment has no patient pseudonym key")

// ReadPseudonym returns the deployment's record; ok is false when there is
// none (not even the bucket).
func ReadPseudonym(ctx context.Context, js jetstream.JetStream) (rec PseudonymRecord, ok bool, err error) {
	kv, err := js.KeyValue(ctx, KV)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("kv %s: %w", KV, err)
	}
	return readPseudonym(ctx, kv)
}

func readPseudonym(ctx context.Context, kv jetstream.KeyValue) (rec PseudonymRecord, ok bool, err error) {
	e, err := kv.Get(ctx, PseudonymKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("kv %s key %s: %w", KV, PseudonymKey, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, false, fmt.Errorf("kv %s key %s: %w", KV, PseudonymKey, err)
	}
	return rec, true, nil
}

// PseudonymRule is the rule a stage pseudonymises patient ids with: the
// recorded one, made with the stage's split salt. No record is an error
// (ErrNoPseudonym) that says which command creates it: a stage never makes
// up a key of its own, which its peers would not share.
func PseudonymRule(ctx context.Context, js jetstream.JetStream, splitSalt string) (pseudonym.Rule, PseudonymRecord, error) {
	rec, ok, err := ReadPseudonym(ctx, js)
	if err != nil {
		return pseudonym.Rule{}, rec, fmt.Errorf("read the patient pseudonym record: %w", err)
	}
	if !ok {
		return pseudonym.Rule{}, rec, fmt.Errorf("%w (kv %s key %s): `eyeflow buckets init` or `eyeflow up` creates it at the deployment's first start; run one against this cluster",
			ErrNoPseudonym, KV, PseudonymKey)
	}
	r, err := rec.Rule(splitSalt)
	return r, rec, err
}

// EnsurePseudonym returns the deployment's record, creating it on the
// first start (by `eyeflow up` and `eyeflow buckets init`, before they
// record the object store): a fresh random key, unless the deployment
// predates keys (its object store was recorded, or its resized or split
// streams hold events), which keeps the legacy salted hash so its patients'
// pseudonyms and splits do not move. did says what happened, for the log.
func EnsurePseudonym(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, by string) (rec PseudonymRecord, did string, err error) {
	rec, ok, err := readPseudonym(ctx, kv)
	if err != nil {
		return rec, "", err
	}
	if ok {
		return rec, "patient pseudonyms: " + rec.String(), nil
	}
	why, err := predatesKeys(ctx, js, kv)
	if err != nil {
		return rec, "", fmt.Errorf("patient pseudonyms: %w", err)
	}
	rec = PseudonymRecord{Scheme: pseudonym.SchemeKeyed, RecordedBy: by, Time: time.Now().UTC()}
	if why != "" {
		rec.Scheme, rec.Why = pseudonym.SchemeLegacy, why
	} else {
		k, err := pseudonym.NewKey()
		if err != nil {
			return rec, "", err
		}
		rec.Key = k.Hex()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, "", err
	}
	if _, err := kv.Create(ctx, PseudonymKey, b); errors.Is(err, jetstream.ErrKeyExists) {
		// Another process's first start won the race: its record is the one.
		rec, _, err = readPseudonym(ctx, kv)
		return rec, "patient pseudonyms: " + rec.String(), err
	} else if err != nil {
		return rec, "", fmt.Errorf("kv %s: record the patient pseudonym key: %w", KV, err)
	}
	return rec, "recorded patient pseudonyms: " + rec.String(), nil
}

// predatesKeys says why the deployment was made before pseudonym keys,
// "" for a new one.
func predatesKeys(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (string, error) {
	st, ok, err := readStore(ctx, kv)
	if err != nil {
		return "", err
	}
	if ok {
		return fmt.Sprintf("kept the salted hash: the deployment's object store was recorded (by %s) before it had a pseudonym key", st.RecordedBy), nil
	}
	for _, name := range []string{bus.StreamResized, bus.StreamSplits} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("stream %s: %w", name, err)
		}
		// LastSeq survives retention: events published once, even aged out.
		if seq := s.CachedInfo().State.LastSeq; seq > 0 {
			return fmt.Sprintf("kept the salted hash: stream %s held %d events before the deployment had a pseudonym key", name, seq), nil
		}
	}
	return "", nil
}
