package objkey

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is S3's key limit in bytes; longer keys cannot be copied to S3
// and are refused everywhere for the same behaviour on every store.
const MaxLen = 1024

// ErrBadKey is wrapped by every error Check returns; a stage dead-letters
// such a message with reason schemas.ReasonBadKey.
var ErrBadKey = errors.New("bad object key")

// Error says which key was refused and why.
type Error struct {
	Key string // quoted when printed: it may hold control characters
	Why string
}

func (e *Error) Error() string {
	k := e.Key
	if len(k) > 128 {
		k = k[:128] + "..."
	}
	return fmt.Sprintf("%v %q: %s", ErrBadKey, k, e.Why)
}

func (e *Error) Unwrap() error { return ErrBadKey }

// Check refuses a key that is empty, longer than MaxLen, not UTF-8, holds a
// control character, is absolute (/x, \x, C:x), has an empty, "." or ".."
// segment (split on / and \, since Windows tools treat both as separators),
// or has such a segment once percent-decoded (%2e%2e%2f: a consumer that
// decodes keys again must not find a traversal either).
func Check(key string) error {
	bad := func(why string) error { return &Error{Key: key, Why: why} }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxLen:
		return bad(fmt.Sprintf("%d bytes, over the %d byte limit", len(key), MaxLen))
	case !utf8.ValidString(key):
		return bad("not valid UTF-8")
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return bad(fmt.Sprintf("control character %U", r))
		}
	}
	if why := pathProblem(key); why != "" {
		return bad(why)
	}
	if strings.Contains(key, "%") {
		if dec, err := url.PathUnescape(key); err == nil && dec != key {
			if why := pathProblem(dec); why != "" {
				return bad("percent-decoded: " + why)
			}
		}
	}
	return nil
}

// pathProblem reports an absolute path or a dot or empty segment.
func pathProblem(key string) string {
	if key[0] == '/' || key[0] == '\\' {
		return "absolute path"
	}
	if len(key) >= 2 && key[1] == ':' && (key[0]|0x20 >= 'a' && key[0]|0x20 <= 'z') {
		return "drive-letter path"
	}
	segs := splitSeps(key)
	for i, seg := range segs {
		switch {
		case seg == "" && i == len(segs)-1:
			return "ends with a separator (a folder, not an object)"
		case seg == "":
			return "empty path segment"
		case seg == "." || seg == "..":
			return "dot segment " + seg
		}
	}
	return ""
}

// splitSeps splits on both / and \, keeping empty segments.
func splitSeps(key string) []string {
	return strings.Split(strings.ReplaceAll(key, "\\", "/"), "/")
}

// Under reports whether key is acceptable and lies under prefix (a folder:
// "a/b" and "a/b/" both mean keys starting with "a/b/"). An empty prefix is
// the bucket's root.
func Under(prefix, key string) error {
	if err := Check(key); err != nil {
		return err
	}
	p := strings.Trim(prefix, "/")
	if p != "" && !strings.HasPrefix(key, p+"/") {
		return &Error{Key: key, Why: fmt.Sprintf("outside the prefix %q", p+"/")}
	}
	return nil
}

// Segment checks one path segment (a class or file name that becomes a
// folder or file): a valid key without a separator.
func Segment(name string) error {
	if err := Check(name); err != nil {
		return err
	}
	if strings.ContainsAny(name, `/\`) {
		return &Error{Key: name, Why: "holds a path separator"}
	}
	return nil
}

// MaxClassLen bounds a class name in bytes.
const MaxClassLen = 128

// Class checks a class name, the one rule for every stage that turns a
// class into a folder (resize's labels, the splitter's dataset layout,
// labelsink's raw/<class>/): a Segment of at most MaxClassLen bytes that
// is not hidden (no leading '.'), holds no ':' (a drive letter or an NTFS
// stream on the machines that train from the folders) and no U+FFFD (the
// mark of a name that was not valid text before someone decoded it).
func Class(name string) error {
	if err := Segment(name); err != nil {
		return err
	}
	bad := func(why string) error { return &Error{Key: name, Why: "class name " + why} }
	switch {
	case len(name) > MaxClassLen:
		return bad(fmt.Sprintf("of %d bytes, over the %d byte limit", len(name), MaxClassLen))
	case strings.HasPrefix(name, "."):
		return bad("starts with a dot (a hidden folder)")
	case strings.ContainsRune(name, ':'):
		return bad("holds ':'")
	case strings.ContainsRune(name, unicode.ReplacementChar):
		return bad("holds U+FFFD")
	}
	return nil
}
