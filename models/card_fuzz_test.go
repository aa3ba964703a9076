package models

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// FuzzParseCard: model.json from an untrusted registry entry never panics,
// and an accepted card is the classifier's input contract.
func FuzzParseCard(f *testing.F) {
	good, err := json.Marshal(NewCard("m", "1", "densenet121", OutputLogits, 15))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"name":"m","version":"1","input":{"name":"input","shape":[-1,3,224,224],"dtype":"float32"},"output":{"name":"o","kind":"probabilities"},"std":[1,1,1]}`))
	f.Add([]byte(`{"input":{"shape":[1e309]}}`))
	f.Add([]byte(`{"std":[0,-1,"x"],"mean":[1,2,3,4]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCard(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "model.json") {
				t.Fatalf("error %q does not name model.json", err)
			}
			return
		}
		if c.Name == "" || c.Version == "" || len(c.Input.Shape) != 4 || c.Input.DType != "float32" {
			t.Fatalf("accepted card %+v", c)
		}
		for _, s := range c.Std {
			if !(s > 0) {
				t.Fatalf("accepted std %v: normalisation would divide by %v", c.Std, s)
			}
		}
	})
}

// FuzzParseLabels: labels.json never panics, and an accepted list is
// non-empty, sorted, without duplicates or blank names.
func FuzzParseLabels(f *testing.F) {
	f.Add([]byte(`["amd","cataract","normal"]`))
	f.Add([]byte(`["b","a"]`))
	f.Add([]byte(`["a","a"]`))
	f.Add([]byte(`[" ",""]`))
	f.Add([]byte(`["\u0000","\ud800"]`))
	f.Add([]byte(`{"0":"a"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLabels(data)
		if err != nil {
			return
		}
		if len(l) == 0 || !sort.StringsAreSorted(l) {
			t.Fatalf("accepted %q", l)
		}
		for i, s := range l {
			if strings.TrimSpace(s) == "" || i > 0 && l[i-1] == s {
				t.Fatalf("accepted %q", l)
			}
		}
	})
}
