package splitter

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

	"eyeflow/internal/machine"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/security/pseudonym"
)

// SplitFunc names the split function recorded in every event. It changes
// whenever the mapping from (salt, key) to a split could change, so an
// assignment can always be reproduced from an event.
const SplitFunc = "sha256-threshold-v1"

// Split key kinds recorded in Split.SplitKey.
const (
	KeyPatient = "patient"
	KeyContent = "content"
)

// Dataset layout.
const (
	DefaultPrefix = "transformed_eye_dataset"
	// DirTest holds every test image, whatever its holdout.
	DirTest = "test"
	// PatientGroup is the named group a key pattern must have.
	PatientGroup = "patient"
)

// DatasetDirs are the top-level folders of the dataset, in report order.
func DatasetDirs() []string {
	return []string{schemas.SplitTrain, DirTest, schemas.SplitHoldout1, schemas.SplitHoldout2, schemas.SplitHoldout3}
}

// holdouts in order; HoldoutWeights index into it.
var holdouts = [3]string{schemas.SplitHoldout1, schemas.SplitHoldout2, schemas.SplitHoldout3}

// Config configures the split function and the stage.
type Config struct {
	// Salt is fed to the hash; changing it reshuffles every split, so it is
	// versioned: SaltVersion is what events record (the salt itself may be
	// kept private).
	Salt        string
	SaltVersion string
	// Patients turns patient ids into pseudonyms, the patients' split keys
	// (package pseudonym): the deployment's rule, never a default. The
	// stage (New) requires it; an Assigner without it keys only content.
	Patients pseudonym.Rule
	// TrainFraction is the share of each class assigned to train; the rest
	// is the test part.
	TrainFraction float64
	// HoldoutWeights divide the test part between holdout_1..3; they are
	// normalised, so {1, 1, 1} gives each holdout a third.
	HoldoutWeights [3]float64
	// KeyPattern, when set, is a Go regexp with a named group "patient"
	// matched against the source object key; a non-empty match is the
	// patient id of uploads whose metadata carries none.
	KeyPattern string
	// Bucket and Prefix locate the dataset layout.
	Bucket string
	Prefix string
	// Concurrency is the number of images the stage copies at once
	// (default machine.IOConcurrency: its time is object-store round trips).
	Concurrency int
}

// DefaultConfig is the split the original batch ETL used: 80% train, the test
// part cut in three equal holdouts.
func DefaultConfig() Config {
	return Config{
		Salt:           "eyeflow-split",
		SaltVersion:    "1",
		TrainFraction:  0.8,
		HoldoutWeights: [3]float64{1, 1, 1},
		Bucket:         objstore.BucketProcessed,
		Prefix:         DefaultPrefix,
		Concurrency:    machine.Detect().IOConcurrency(),
	}
}

// Validate reports a configuration the splitter cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Salt == "" || c.SaltVersion == "" {
		errs = append(errs, errors.New("splitter: salt and salt version are required"))
	}
	if c.Patients.Valid() && c.Patients.Salt() != c.Salt {
		errs = append(errs, errors.New("splitter: the patient pseudonym rule was made with another salt than the split's"))
	}
	if !(c.TrainFraction > 0 && c.TrainFraction < 1) {
		errs = append(errs, fmt.Errorf("splitter: train fraction %v must be strictly between 0 and 1", c.TrainFraction))
	}
	for i, w := range c.HoldoutWeights {
		if !(w > 0) || math.IsInf(w, 0) {
			errs = append(errs, fmt.Errorf("splitter: holdout_%d weight %v must be positive: every holdout gets images", i+1, w))
		}
	}
	if c.KeyPattern != "" {
		if _, _, err := compilePattern(c.KeyPattern); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("splitter: dataset bucket is required"))
	}
	if strings.Trim(c.Prefix, "/") == "" {
		errs = append(errs, errors.New("splitter: dataset prefix is required"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("splitter: concurrency %d must be at least 1", c.Concurrency))
	}
	return errors.Join(errs...)
}

func compilePattern(p string) (*regexp.Regexp, int, error) {
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, 0, fmt.Errorf("splitter: key pattern: %w", err)
	}
	i := re.SubexpIndex(PatientGroup)
	if i < 0 {
		return nil, 0, fmt.Errorf("splitter: key pattern %q has no (?P<%s>...) group", p, PatientGroup)
	}
	return re, i, nil
}

// Assigner is the split function for one configuration. It holds no state
// beyond the configuration and is safe for concurrent use.
type Assigner struct {
	salt        string
	saltVersion string
	patients    pseudonym.Rule
	// trainCut and holdoutCut are thresholds on the 64-bit hash: integers,
	// so every machine compares exactly the same numbers (no floating point
	// happens per image).
	trainCut   uint64
	holdoutCut [3]uint64
	pattern    *regexp.Regexp
	patientIdx int
}

// NewAssigner validates the split part of cfg and builds the function.
func NewAssigner(cfg Config) (*Assigner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Assigner{salt: cfg.Salt, saltVersion: cfg.SaltVersion, patients: cfg.Patients}
	if cfg.KeyPattern != "" {
		a.pattern, a.patientIdx, _ = compilePattern(cfg.KeyPattern)
	}
	a.trainCut = cut(cfg.TrainFraction)
	total := cfg.HoldoutWeights[0] + cfg.HoldoutWeights[1] + cfg.HoldoutWeights[2]
	span := math.MaxUint64 - a.trainCut
	var acc float64
	for i, w := range cfg.HoldoutWeights {
		acc += w
		// The explicit conversions keep the compiler from fusing the
		// multiply into an add, which some architectures would round
		// differently.
		a.holdoutCut[i] = a.trainCut + uint64(math.Min(float64(acc/total)*float64(span), float64(span)))
	}
	// The last holdout ends at the top of the range: every test image falls
	// in exactly one holdout whatever the rounding above.
	a.holdoutCut[2] = math.MaxUint64
	return a, nil
}

// cut maps a fraction in (0,1) to a threshold on [0, 2^64).
func cut(f float64) uint64 {
	v := f * 0x1p64
	if v >= 0x1p64 {
		return math.MaxUint64
	}
	return uint64(v)
}

// SaltVersion is the salt version recorded in events.
func (a *Assigner) SaltVersion() string { return a.saltVersion }

// KeysPatients reports whether the assigner has a pseudonym rule, without
// which it cannot key a patient id (PatientKey panics).
func (a *Assigner) KeysPatients() bool { return a.patients.Valid() }

// Key is what the split is keyed on. A patient key's Value is the
// patient's pseudonym (package pseudonym), never the id itself; a content
// key's is the image id.
type Key struct {
	Kind  string // KeyPatient or KeyContent
	Value string
}

// PatientKey is the split key of a patient id ("" gives a zero Key): its
// pseudonym under the configured rule, which is also the patient's split
// hash.
func (a *Assigner) PatientKey(patientID string) Key {
	if strings.TrimSpace(patientID) == "" {
		return Key{}
	}
	if !a.patients.Valid() {
		// New and Explain refuse patient ids without a rule: a wiring bug.
		panic("splitter: a patient id to key without a pseudonym rule")
	}
	return Key{KeyPatient, a.patients.Of(patientID)}
}

// KeyFor picks the split key of an image: the patient id from the upload's
// metadata (or the DICOM file), else the patient matched by the key pattern
// in sourceKey, else the content hash (image id). Patient ids are keyed by
// their pseudonym.
func (a *Assigner) KeyFor(imageID, patientID, sourceKey string) Key {
	if k := a.PatientKey(patientID); k.Kind != "" {
		return k
	}
	if k, ok := a.patternKey(sourceKey); ok {
		return k
	}
	return Key{KeyContent, strings.ToLower(imageID)}
}

// patternKey is the patient key the configured key pattern finds in a
// source key.
func (a *Assigner) patternKey(sourceKey string) (Key, bool) {
	if a.pattern == nil {
		return Key{}, false
	}
	m := a.pattern.FindStringSubmatch(sourceKey)
	if m == nil {
		return Key{}, false
	}
	k := a.PatientKey(m[a.patientIdx])
	return k, k.Kind != ""
}

// KeyForResized is KeyFor for an eye.resized event: the patient hash the
// resize stage computed wins, then a raw patient id (from a producer other
// than eyeflow's resize stage), then the key pattern, then the content.
func (a *Assigner) KeyForResized(r schemas.Resized) Key {
	if validHash(r.PatientHash) {
		return Key{KeyPatient, r.PatientHash}
	}
	return a.KeyFor(r.ImageID, r.PatientID, r.Source.Key)
}

// Assignment is where one image goes and why.
type Assignment struct {
	// Split is train, holdout_1..3 or unlabeled.
	Split string
	// Holdout is the holdout for test images, "" otherwise.
	Holdout string
	// Would is the split the key maps to, also for unlabeled images (which
	// never join it): what the image gets once it has a class.
	Would string
	Key   Key
	// Hash is the hex SHA-256 the split came from; U is its first 64 bits
	// as a fraction of the range, for people to compare with the cuts.
	Hash string
	U    float64
}

// Dirs returns the dataset folders the image is copied to: train, or test
// and its holdout; none for unlabeled images.
func (as Assignment) Dirs() []string {
	switch {
	case as.Split == schemas.SplitTrain:
		return []string{schemas.SplitTrain}
	case as.Holdout != "":
		return []string{DirTest, as.Holdout}
	}
	return nil
}

// Assign places an image with the given key and class ("" for unlabeled).
// The class only decides labelled versus unlabeled: it never enters the
// hash, so a patient's eyes of different classes still share a split. A
// patient key's Value is its pseudonym, which is the split hash itself; a
// patient Value that is not one (built by hand) is pseudonymised as an id.
func (a *Assigner) Assign(key Key, class string) Assignment {
	var sum [sha256.Size]byte
	switch {
	case key.Kind == KeyPatient && validHash(key.Value):
		_, _ = hex.Decode(sum[:], []byte(key.Value)) // valid by the check
	case key.Kind == KeyPatient:
		_, _ = hex.Decode(sum[:], []byte(a.PatientKey(key.Value).Value)) // a pseudonym is hex sha256
	default:
		sum = a.hash(key)
	}
	h := binary.BigEndian.Uint64(sum[:8])
	as := Assignment{Key: key, Hash: hex.EncodeToString(sum[:]), U: float64(h>>11) * 0x1p-53}
	if h < a.trainCut {
		as.Would = schemas.SplitTrain
	} else {
		for i, c := range a.holdoutCut {
			if h <= c {
				as.Would = holdouts[i]
				break
			}
		}
	}
	if class == "" {
		as.Split = schemas.SplitUnlabeled
		return as
	}
	as.Split = as.Would
	if as.Split != schemas.SplitTrain {
		as.Holdout = as.Split
	}
	return as
}

// AssignResized is Assign for an eye.resized event.
func (a *Assigner) AssignResized(r schemas.Resized) Assignment {
	return a.Assign(a.KeyForResized(r), r.Label)
}

// hash is the split hash of a content key.
func (a *Assigner) hash(key Key) [sha256.Size]byte {
	return hashFields(a.salt, key.Kind, key.Value)
}

// hashFields is SHA-256 over length-prefixed SplitFunc, salt, kind and
// value, so that no two different (salt, kind, key) triples feed the hash
// the same bytes: the split hash of a content key. (Patients' split hashes
// are their pseudonyms: package pseudonym.)
func hashFields(salt, kind, value string) [sha256.Size]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, s := range []string{SplitFunc, salt, kind, value} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// validClass reports whether a class can be a dataset folder name as is
// (objkey.Class). Resize already sanitises labels with the same rule; this
// guards the bucket layout against any other producer of eye.resized.
func validClass(c string) bool { return objkey.Class(c) == nil }

// validHash reports whether h is a lowercase hex SHA-256 (a pseudonym).
func validHash(h string) bool { return schemas.ValidImageID(h) }
