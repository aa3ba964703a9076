package dashboard

import (
	"testing"

	"eyeflow/processors/labelsink"
)

// TestOrderTasks: per alert, the smallest margin (else confidence) first.
func TestOrderTasks(t *testing.T) {
	m := func(f float64) *float64 { return &f }
	task := func(id, alert string, conf float64, margin *float64) openTask {
		return openTask{Task: labelsink.Task{Meta: labelsink.TaskMeta{ImageID: id, AlertID: alert, Confidence: conf, Margin: margin}}}
	}
	ts := []openTask{
		task("b1", "b", 0.2, nil),
		task("a1", "a", 0.45, m(0.30)),
		task("a2", "a", 0.60, m(0.02)), // confident, but its runner-up is close
		task("a3", "a", 0.35, nil),
		task("b0", "b", 0.1, nil),
	}
	orderTasks(ts)
	var got []string
	for _, x := range ts {
		got = append(got, x.ImageID())
	}
	want := []string{"a2", "a1", "a3", "b0", "b1"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}
