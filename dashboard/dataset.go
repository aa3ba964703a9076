package dashboard

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"eyeflow/objstore"
	"eyeflow/processors/splitter"
)

// segment is one path segment of a dataset key: class names and image ids.
// Dots are allowed inside (a class "stage.2"), but a segment of dots alone
// is refused below, so "." and ".." can never reach the store.
var segment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidThumbKey reports whether key is an image of the dataset layout,
// <prefix>/<dir>/<class>/<image-id>.png with dir one of the dataset's
// folders: the only keys the thumbnail handler streams. Anything else
// (other prefixes, traversal, encoded separators, other file types) is
// refused before the store is asked.
func ValidThumbKey(prefix, key string) bool {
	prefix = strings.Trim(prefix, "/")
	rest, ok := strings.CutPrefix(key, prefix+"/")
	if prefix == "" || !ok || strings.ContainsAny(key, "\\%\x00") {
		return false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !slices.Contains(splitter.DatasetDirs(), parts[0]) {
		return false
	}
	id, ok := strings.CutSuffix(parts[2], ".png")
	if !ok {
		return false
	}
	for _, s := range []string{parts[1], id} {
		if !segment.MatchString(s) || strings.Trim(s, ".") == "" || strings.Contains(s, "..") {
			return false
		}
	}
	return true
}

// ClassSamples are sample images of one class in one split.
type ClassSamples struct {
	Class string
	Count int
	Keys  []string
}

// Samples lists <prefix>/<dir>/ and keeps the perClass smallest keys of
// each class (keys are content hashes, so that is an arbitrary but stable
// sample).
func Samples(ctx context.Context, store objstore.Store, bucket, prefix, dir string, perClass int) ([]ClassSamples, error) {
	prefix = strings.Trim(prefix, "/")
	byClass := map[string]*ClassSamples{}
	var order []string
	for info, err := range store.List(ctx, bucket, prefix+"/"+dir+"/") {
		if err != nil {
			return nil, fmt.Errorf("samples: list %s/%s/%s: %w", bucket, prefix, dir, err)
		}
		if !ValidThumbKey(prefix, info.Key) {
			continue
		}
		class := strings.Split(strings.TrimPrefix(info.Key, prefix+"/"+dir+"/"), "/")[0]
		cs := byClass[class]
		if cs == nil {
			cs = &ClassSamples{Class: class}
			byClass[class] = cs
			order = append(order, class)
		}
		cs.Count++
		// Keep the smallest keys: listing order differs between stores.
		cs.Keys = append(cs.Keys, info.Key)
		if len(cs.Keys) > 2*perClass+16 {
			slices.Sort(cs.Keys)
			cs.Keys = cs.Keys[:perClass]
		}
	}
	slices.Sort(order)
	out := make([]ClassSamples, 0, len(order))
	for _, c := range order {
		cs := byClass[c]
		slices.Sort(cs.Keys)
		cs.Keys = cs.Keys[:min(perClass, len(cs.Keys))]
		out = append(out, *cs)
	}
	return out, nil
}
