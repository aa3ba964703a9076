package trainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"eyeflow/objstore"
	"eyeflow/schemas"
)

// Dataset is the labelled part of the processed bucket, as the splitter
// laid it out: <prefix>/<split>/<class>/<image-id>.png.
type Dataset struct {
	Bucket, Prefix string
	// Examples per split (train, holdout_1, holdout_2, holdout_3), sorted by
	// class and image id.
	Splits map[string][]Example
	// Newest is the latest modification time of a train image.
	Newest time.Time
}

// datasetSplits are the folders the trainer reads; test/ repeats the holdouts.
func datasetSplits() []string {
	return []string{schemas.SplitTrain, schemas.SplitHoldout1, schemas.SplitHoldout2, schemas.SplitHoldout3}
}

// ListDataset lists the dataset layout.
func ListDataset(ctx context.Context, store objstore.Store, bucket, prefix string) (*Dataset, error) {
	prefix = strings.Trim(prefix, "/")
	d := &Dataset{Bucket: bucket, Prefix: prefix, Splits: map[string][]Example{}}
	for _, split := range datasetSplits() {
		p := prefix + "/" + split + "/"
		for info, err := range store.List(ctx, bucket, p) {
			if err != nil {
				return nil, fmt.Errorf("list dataset %s/%s: %w", bucket, p, err)
			}
			class, file, ok := strings.Cut(strings.TrimPrefix(info.Key, p), "/")
			if !ok || class == "" || strings.Contains(file, "/") || path.Ext(file) != ".png" {
				continue
			}
			d.Splits[split] = append(d.Splits[split], Example{
				ImageID: strings.TrimSuffix(file, ".png"), Class: class, Split: split, Bucket: bucket, Key: info.Key,
			})
			if split == schemas.SplitTrain && info.Modified.After(d.Newest) {
				d.Newest = info.Modified
			}
		}
		slices.SortFunc(d.Splits[split], func(a, b Example) int {
			return strings.Compare(a.Class+"/"+a.ImageID, b.Class+"/"+b.ImageID)
		})
	}
	return d, nil
}

// Classes are the train split's classes in ImageFolder (sorted) order: the
// labels of a model trained on it.
func (d *Dataset) Classes() []string { return classesOf(d.Splits[schemas.SplitTrain]) }

func classesOf(exs []Example) []string {
	var out []string
	for _, e := range exs {
		if len(out) == 0 || out[len(out)-1] != e.Class {
			if !slices.Contains(out, e.Class) {
				out = append(out, e.Class)
			}
		}
	}
	slices.Sort(out)
	return out
}

// ClassCounts counts a split's images per class.
func (d *Dataset) ClassCounts(split string) map[string]int {
	out := map[string]int{}
	for _, e := range d.Splits[split] {
		out[e.Class]++
	}
	return out
}

// Digest identifies a list of examples by image ids and classes: two
// requests over the same training set have the same digest, whatever their
// order or origin.
func Digest(exs []Example) string {
	lines := make([]string, len(exs))
	for i, e := range exs {
		lines[i] = e.Class + "\t" + e.ImageID
	}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		io.WriteString(h, l+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// storeImages reads examples from the object store.
type storeImages struct{ store objstore.Store }

// StoreImages is the ImageSource of a dataset in an object store.
func StoreImages(store objstore.Store) ImageSource { return storeImages{store} }

func (s storeImages) PNG(ctx context.Context, ex Example) ([]byte, error) {
	rc, _, err := s.store.Get(ctx, ex.Bucket, ex.Key)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", ex.Bucket, ex.Key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", ex.Bucket, ex.Key, err)
	}
	return b, nil
}
