package objkey

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		key string
		ok  bool
	}{
		{"amd/scan.jpg", true},
		{"incoming/2025/x y+z (1).jpeg", true},
		{"dr/ünïcode-名前.png", true},
		{"a..b/c...jpg", true},     // dots inside a name are not a segment
		{"50%25.jpg", true},        // a literal percent that decodes harmlessly
		{`windows\name.jpg`, true}, // a backslash alone is a name character
		{"", false},
		{"../etc/passwd", false},
		{"amd/../../x.jpg", false},
		{`amd\..\..\x.jpg`, false},
		{"./x.jpg", false},
		{"a/./b.jpg", false},
		{"/etc/passwd", false},
		{`\\server\share\x`, false},
		{"C:/x.jpg", false},
		{"c:x.jpg", false},
		{"a//b.jpg", false},
		{"amd/", false},
		{"%2e%2e/x.jpg", false},
		{"amd%2F..%2F..%2Fx.jpg", false},
		{"%2E%2E%5Cx.jpg", false},
		{"a\x00b.jpg", false},
		{"a\nb.jpg", false},
		{"a\x1b[31mred.jpg", false},
		{"a\u0085b.jpg", false}, // C1 control
		{"bad\xffutf8.jpg", false},
		{strings.Repeat("k", MaxLen), true},
		{strings.Repeat("k", MaxLen+1), false},
	} {
		err := Check(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadKey) {
			t.Errorf("Check(%q) error %v does not wrap ErrBadKey", tt.key, err)
		}
	}
}

func TestUnderAndSegment(t *testing.T) {
	for _, tt := range []struct {
		prefix, key string
		ok          bool
	}{
		{"resized/", "resized/ab.png", true},
		{"resized", "resized/ab.png", true},
		{"", "x.png", true},
		{"resized/", "resizedx/ab.png", false},
		{"resized/", "resized/../ab.png", false},
		{"data/train", "data/train2/x.png", false},
	} {
		if err := Under(tt.prefix, tt.key); (err == nil) != tt.ok {
			t.Errorf("Under(%q, %q) = %v, want ok=%v", tt.prefix, tt.key, err, tt.ok)
		}
	}
	for name, ok := range map[string]bool{"amd": true, "a/b": false, `a\b`: false, "..": false, "": false} {
		if err := Segment(name); (err == nil) != ok {
			t.Errorf("Segment(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// FuzzCheck: an accepted key has no traversal, whatever the decoding, and
// the error message quotes the key (no raw control bytes reach a log).
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"amd/x.jpg", "../x", "%2e%2e%2fx", `a\..\b`, "a\x00b", "C:x", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := Check(key)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\x00\n\r\x1b") {
				t.Fatalf("error message carries raw control bytes: %q", err.Error())
			}
			return
		}
		for _, seg := range splitSeps(key) {
			if seg == ".." || seg == "." || seg == "" {
				t.Fatalf("accepted %q with segment %q", key, seg)
			}
		}
		if len(key) > MaxLen || strings.HasPrefix(key, "/") {
			t.Fatalf("accepted %q", key)
		}
	})
}

// TestClass is the one class-name rule. Resize (128 bytes, no ':', no
// leading dot) and the splitter (255 bytes, objkey.Segment, no U+FFFD)
// used to disagree on the rows marked "was": a label one accepted and the
// other refused.
func TestClass(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"glaucoma", true},
		{"diabetic_retinopathy", true},
		{"Myopie (hohe)", true},
		{"名前", true},
		{strings.Repeat("x", MaxClassLen), true},
		{strings.Repeat("x", MaxClassLen+1), false}, // was: splitter accepted up to 255
		{strings.Repeat("é", 100), false},           // 200 bytes: was: splitter accepted
		{".hidden", false},                          // was: splitter accepted
		{"ab:c", false},                             // was: splitter accepted
		{"bad\uFFFDname", false},                    // was: resize accepted
		{"%2e%2e", false},                           // was: resize accepted
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{`a\b`, false},
		{"tab\there", false},
		{"nul\x00", false},
		{"\xff\xfe", false},
	} {
		if err := Class(tt.name); (err == nil) != tt.ok {
			t.Errorf("Class(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
