package splitter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Explanation says where a local file would go, without the pipeline.
type Explanation struct {
	File    string `json:"file"`
	ImageID string `json:"image_id"`
	Class   string `json:"class,omitempty"`
	// KeyKind and Key are what the split was keyed on.
	KeyKind string `json:"split_key_kind"`
	Key     string `json:"split_key"`
	// Hash is the SHA-256 the split came from, U its first 64 bits as a
	// fraction of the range (train below the train fraction).
	Hash        string  `json:"hash"`
	U           float64 `json:"u"`
	Split       string  `json:"split"`
	Holdout     string  `json:"holdout,omitempty"`
	Would       string  `json:"split_if_labelled"`
	SplitFunc   string  `json:"split_func"`
	SaltVersion string  `json:"salt_version"`
	// Paths are the dataset keys the image would be copied to.
	Paths []string `json:"paths,omitempty"`
}

// Explain reads each file and explains its split. The image id is the
// SHA-256 of the file's bytes, as resize computes it from the upload. class
// and patientID apply to every file; without a class a file is unlabeled
// (Would still says where it goes once labelled). A configured key pattern
// is matched against the path as given, with forward slashes.
func Explain(a *Assigner, prefix string, files []string, class, patientID string) ([]Explanation, error) {
	if class != "" && !validClass(class) {
		return nil, fmt.Errorf("split explain: class %q cannot be a dataset folder name", class)
	}
	if (strings.TrimSpace(patientID) != "" || a.pattern != nil) && !a.KeysPatients() {
		return nil, errors.New("split explain: a patient id (or key pattern) needs the deployment's patient pseudonym rule")
	}
	out := make([]Explanation, 0, len(files))
	for _, f := range files {
		id, err := fileID(f)
		if err != nil {
			return nil, fmt.Errorf("split explain: %w", err)
		}
		as := a.Assign(a.KeyFor(id, patientID, filepath.ToSlash(f)), class)
		e := Explanation{
			File: f, ImageID: id, Class: class,
			KeyKind: as.Key.Kind, Key: as.Key.Value, Hash: as.Hash, U: as.U,
			Split: as.Split, Holdout: as.Holdout, Would: as.Would,
			SplitFunc: SplitFunc, SaltVersion: a.SaltVersion(),
		}
		for _, d := range as.Dirs() {
			e.Paths = append(e.Paths, DatasetKey(prefix, d, class, id))
		}
		out = append(out, e)
	}
	return out, nil
}

func fileID(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteExplanations prints one block per file.
func WriteExplanations(w io.Writer, es []Explanation) error {
	for i, e := range es {
		if i > 0 {
			fmt.Fprintln(w)
		}
		split := e.Split
		if e.Holdout != "" {
			split += " (test)"
		}
		if e.Class == "" {
			split += fmt.Sprintf("; with a class it would be %s", e.Would)
		}
		lines := [][2]string{
			{"file", e.File},
			{"image id", e.ImageID},
			{"split", split},
			{"split key", e.KeyKind + " " + e.Key},
			{"hash", fmt.Sprintf("%s (u = %.6f)", e.Hash, e.U)},
			{"function", e.SplitFunc + ", salt version " + e.SaltVersion},
		}
		if len(e.Paths) > 0 {
			lines = append(lines, [2]string{"dataset", strings.Join(e.Paths, ", ")})
		}
		for _, l := range lines {
			if _, err := fmt.Fprintf(w, "%-10s %s\n", l[0]+":", l[1]); err != nil {
				return fmt.Errorf("split explain: %w", err)
			}
		}
	}
	return nil
}

// WriteExplanationsJSON prints the explanations as a JSON array.
func WriteExplanationsJSON(w io.Writer, es []Explanation) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(es); err != nil {
		return fmt.Errorf("split explain: %w", err)
	}
	return nil
}
