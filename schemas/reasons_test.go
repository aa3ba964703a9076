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
