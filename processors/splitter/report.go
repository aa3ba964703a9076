package splitter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"eyeflow/objstore"
	"eyeflow/schemas"
)

// DatasetReport counts the dataset per class and folder, as found in the
// bucket. It is built by listing, never from the stage's memory, so it shows
// what training would actually read.
type DatasetReport struct {
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"`
	// Dirs are the folders counted, in column order.
	Dirs    []string      `json:"dirs"`
	Classes []ClassCounts `json:"classes"`
	// Total is the per-folder sum over classes.
	Total map[string]int `json:"total"`
	// Images is the number of distinct labelled images (train + test).
	Images int `json:"images"`
	// Other counts objects under the prefix outside the layout.
	Other int `json:"other"`
	// Problems lists broken invariants: a test image in no holdout or in
	// several, a holdout image missing from test, an image in both train and
	// test (leakage, e.g. after a salt change). Empty when the layout holds.
	Problems []string `json:"problems"`
}

// ClassCounts is one class's count per folder.
type ClassCounts struct {
	Class  string         `json:"class"`
	Counts map[string]int `json:"counts"`
	// TrainFraction is train / (train + test); 0 for an empty class.
	TrainFraction float64 `json:"train_fraction"`
}

// maxProblems bounds the problem list, so that a wholesale breakage (a salt
// change) does not produce a report as big as the dataset.
const maxProblems = 50

// Report lists bucket/prefix and counts the dataset layout.
func Report(ctx context.Context, store objstore.Store, bucket, prefix string) (DatasetReport, error) {
	prefix = strings.Trim(prefix, "/")
	r := DatasetReport{Bucket: bucket, Prefix: prefix, Dirs: DatasetDirs(), Total: map[string]int{}, Problems: []string{}}
	known := map[string]bool{}
	for _, d := range r.Dirs {
		known[d] = true
	}
	// where[class][imageID] is the set of folders holding the image.
	where := map[string]map[string][]string{}
	for info, err := range store.List(ctx, bucket, prefix+"/") {
		if err != nil {
			return DatasetReport{}, fmt.Errorf("split report: list %s/%s: %w", bucket, prefix, err)
		}
		parts := strings.Split(strings.TrimPrefix(info.Key, prefix+"/"), "/")
		if len(parts) != 3 || !known[parts[0]] || !strings.HasSuffix(parts[2], ".png") {
			r.Other++
			continue
		}
		dir, class, id := parts[0], parts[1], strings.TrimSuffix(parts[2], ".png")
		if where[class] == nil {
			where[class] = map[string][]string{}
		}
		where[class][id] = append(where[class][id], dir)
	}
	classes := make([]string, 0, len(where))
	for c := range where {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	images := map[string][]string{} // image id -> "class/dir" over all classes
	for _, c := range classes {
		cc := ClassCounts{Class: c, Counts: map[string]int{}}
		for _, d := range r.Dirs {
			cc.Counts[d] = 0
		}
		ids := make([]string, 0, len(where[c]))
		for id := range where[c] {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			dirs := where[c][id]
			for _, d := range dirs {
				cc.Counts[d]++
				r.Total[d]++
				images[id] = append(images[id], c+"/"+d)
			}
			r.problem(checkImage(c, id, dirs))
		}
		if n := cc.Counts[schemas.SplitTrain] + cc.Counts[DirTest]; n > 0 {
			cc.TrainFraction = float64(cc.Counts[schemas.SplitTrain]) / float64(n)
		}
		r.Classes = append(r.Classes, cc)
	}
	for _, d := range r.Dirs {
		r.Total[d] += 0 // every folder present in JSON, even when empty
	}
	ids := make([]string, 0, len(images))
	for id := range images {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var train, test bool
		for _, cd := range images[id] {
			train = train || strings.HasSuffix(cd, "/"+schemas.SplitTrain)
			test = test || strings.HasSuffix(cd, "/"+DirTest)
		}
		if train && test {
			r.problem(fmt.Sprintf("image %s is in train and in test (%s): leakage", id, strings.Join(images[id], ", ")))
		}
	}
	r.Images = len(images)
	return r, nil
}

func (r *DatasetReport) problem(p string) {
	switch {
	case p == "":
	case len(r.Problems) < maxProblems:
		r.Problems = append(r.Problems, p)
	case len(r.Problems) == maxProblems:
		r.Problems = append(r.Problems, "... more problems left out")
	}
}

// checkImage checks one image of one class: in train only, or in test and
// exactly one holdout.
func checkImage(class, id string, dirs []string) string {
	var train, test bool
	var hs []string
	for _, d := range dirs {
		switch d {
		case schemas.SplitTrain:
			train = true
		case DirTest:
			test = true
		default:
			hs = append(hs, d)
		}
	}
	switch {
	case train && (test || len(hs) > 0):
		return "" // reported as leakage across classes and folders
	case test && len(hs) != 1:
		return fmt.Sprintf("%s/%s: test image in %d holdouts %v, want exactly one", class, id, len(hs), hs)
	case !test && len(hs) > 0:
		return fmt.Sprintf("%s/%s: in %v but not in test", class, id, hs)
	}
	return ""
}

// WriteJSON writes the report as one JSON object, for the dashboard.
func (r DatasetReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("split report: %w", err)
	}
	return nil
}

// WriteText writes the report as a table: one row per class, one column
// per folder, then totals and any problems.
func (r DatasetReport) WriteText(w io.Writer) error {
	// Numbers align right; class names are padded here so that they read
	// left-aligned in the right-aligning writer.
	width := len("class")
	for _, c := range r.Classes {
		width = max(width, len(c.Class))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\t%s\ttrain share\t\n", width, "class", strings.Join(r.Dirs, "\t"))
	row := func(name string, counts map[string]int, frac float64) {
		cells := make([]string, len(r.Dirs))
		for i, d := range r.Dirs {
			cells[i] = fmt.Sprint(counts[d])
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%.3f\t\n", width, name, strings.Join(cells, "\t"), frac)
	}
	for _, c := range r.Classes {
		row(c.Class, c.Counts, c.TrainFraction)
	}
	var all float64
	if n := r.Total[schemas.SplitTrain] + r.Total[DirTest]; n > 0 {
		all = float64(r.Total[schemas.SplitTrain]) / float64(n)
	}
	row("total", r.Total, all)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("split report: %w", err)
	}
	fmt.Fprintf(w, "\n%d labelled images in %s/%s (unlabeled images are never copied here)", r.Images, r.Bucket, r.Prefix)
	if r.Other > 0 {
		fmt.Fprintf(w, "; %d other objects under the prefix", r.Other)
	}
	fmt.Fprintln(w)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	return nil
}
