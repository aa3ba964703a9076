package schemas_test

import (
	"regexp"
	"testing"

	"eyeflow/schemas"
)

// TestReasonsAreOneVocabulary: every dead-letter reason is distinct and
// snake_case, so one cause has one name in dead letters and metrics.
func TestReasonsAreOneVocabulary(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[string]bool{}
	for _, r := range schemas.Reasons() {
		if !snake.MatchString(r) {
			t.Errorf("reason %q is not snake_case", r)
		}
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
	}
}

func TestValidImageID(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", true},
		{"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", false}, // upper case
		{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0", false},  // 63
		{"img1", false},
		{"", false},
		{"../../9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0", false},
	} {
		if got := schemas.ValidImageID(tt.id); got != tt.ok {
			t.Errorf("ValidImageID(%q) = %v, want %v", tt.id, got, tt.ok)
		}
	}
}
