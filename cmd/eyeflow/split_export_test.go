package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestWriteClassIndex: the class list and class_to_idx cover the whole
// data set, numbered in ImageFolder's (sorted) order, whichever split a
// class is in.
func TestWriteClassIndex(t *testing.T) {
	dir := t.TempDir()
	names, err := writeClassIndex(dir, map[string]bool{"normal": true, "amd": true, "cataract": true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"amd", "cataract", "normal"}; !reflect.DeepEqual(names, want) {
		t.Errorf("classes %v, want %v", names, want)
	}
	var classes []string
	var idx map[string]int
	for name, v := range map[string]any{"classes.json": &classes, "class_to_idx.json": &idx} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if !reflect.DeepEqual(classes, names) || !reflect.DeepEqual(idx, map[string]int{"amd": 0, "cataract": 1, "normal": 2}) {
		t.Errorf("classes.json %v, class_to_idx.json %v", classes, idx)
	}
}
