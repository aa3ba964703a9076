package labelsink

import (
	"strings"
	"testing"

	"eyeflow/schemas"
	"eyeflow/security/objkey"
)

// fuzzSink is a sink with the default classes and no NATS: parseExport is
// pure, it only consults the class list.
func fuzzSink() *Sink {
	cfg := DefaultConfig()
	s := &Sink{cfg: cfg, classes: map[string]bool{}}
	for _, c := range cfg.Classes {
		s.classes[c] = true
	}
	return s
}

// FuzzParseExport feeds arbitrary export files (Label Studio writes them,
// but anyone with write access to the labelling bucket can) to the reader:
// no panic, every item ends up labelled or rejected with a reason, and a
// labelled item names a known class, a valid image id and a source key
// that cannot escape the raw bucket's layout.
func FuzzParseExport(f *testing.F) {
	id := strings.Repeat("ab", 32)
	for _, s := range []string{
		`{"id":1,"data":{"image":"s3://raw/a.jpg","image_id":"` + id + `"},"meta":{"source_bucket":"raw","source_key":"amd/a.jpg"},"annotations":[{"id":2,"result":[{"type":"choices","value":{"choices":["amd"]}}]}]}`,
		`[{"data":{"image":"s3://raw/x/y.png"},"annotations":[{"result":[{"type":"choices","value":{"choices":["normal"]}}],"was_cancelled":false}]}]`,
		`{"id":3,"result":[{"type":"choices","value":{"choices":["cataract"]}}],"task":{"id":1,"data":{"image":"s3://raw/q.jpg"}}}`,
		`{"data":{"image":"s3://raw/../../etc/passwd"},"annotations":[{"result":[{"type":"choices","value":{"choices":["amd"]}}]}]}`,
		`{"data":{"image_id":"` + id + `"},"meta":{"source_bucket":"raw","source_key":"a.\\..\\x"},"annotations":[{"result":[{"type":"choices","value":{"choices":["amd"]}}]}]}`,
		`{"data":{},"annotations":[{"was_cancelled":true}]}`,
		`[]`, `[1,"x",null]`, `{"task":"x"}`, `{"annotations":{}}`, ``, `[`,
	} {
		f.Add([]byte(s))
	}
	s := fuzzSink()
	f.Fuzz(func(t *testing.T, data []byte) {
		good, bad := s.parseExport(data)
		if len(good)+len(bad) == 0 {
			t.Fatalf("export %q produced neither labels nor rejections", data)
		}
		for _, r := range bad {
			if r.reason == "" || r.err == nil {
				t.Fatalf("rejection without reason or error: %+v", r)
			}
		}
		for _, l := range good {
			if !s.classes[l.Class] || !schemas.ValidImageID(l.ImageID) || l.Source.Bucket == "" {
				t.Fatalf("labelled item %+v", l)
			}
			if err := objkey.Check(l.Source.Key); err != nil {
				t.Fatalf("labelled item with unsafe source key %q: %v", l.Source.Key, err)
			}
			dst := RawKey(l.Class, l.ImageID, l.Source.Key)
			if err := objkey.Check(dst); err != nil || !strings.HasPrefix(dst, l.Class+"/") || strings.Count(dst, "/") != 1 {
				t.Fatalf("raw key %q for %+v: %v", dst, l, err)
			}
		}
	})
}
