package trainer

import (
	"fmt"
	"slices"
	"strings"

	"eyeflow/schemas"
)

// GateConfig are the promotion rules.
type GateConfig struct {
	// Margin is how much a candidate's holdout_2 macro-F1 must beat prod's
	// to go to canary (default 0.02).
	Margin float64
	// MaxRecallDrop is the most recall any class with at least
	// MinClassImages holdout_2 images may lose against prod (default 0.10).
	MaxRecallDrop  float64
	MinClassImages int
	// CanaryMin is how many live predictions the canary serves before it
	// can go to prod (default 200).
	CanaryMin int
	// LowConfidence is the confidence below which a live prediction counts
	// as low (the drift rule's threshold, default 0.5); LowConfidenceSlack
	// is how much higher the canary's low-confidence rate may be than
	// prod's over the same period (default 0.02: sampling noise).
	LowConfidence      float64
	LowConfidenceSlack float64
	// RollbackWindow is how many prod predictions after a promotion a drift
	// alert may come within to trigger a rollback (default 500).
	RollbackWindow int
}

// DefaultGate returns the defaults above.
func DefaultGate() GateConfig {
	return GateConfig{Margin: 0.02, MaxRecallDrop: 0.10, MinClassImages: 5, CanaryMin: 200,
		LowConfidence: 0.5, LowConfidenceSlack: 0.02, RollbackWindow: 500}
}

// CanaryGate decides whether a candidate may go to canary, from its
// holdout_2 figures and prod's on the same images (prod nil: prod serves
// no trained model). The reason says why, either way.
func (g GateConfig) CanaryGate(cand schemas.HoldoutMetrics, prod *schemas.HoldoutMetrics) (bool, string) {
	if cand.Images == 0 {
		return false, "holdout_2 has no images of the model's classes: nothing to judge it on"
	}
	if prod == nil {
		chance := 1 / float64(max(1, len(cand.Support)))
		if cand.Accuracy <= chance {
			return false, fmt.Sprintf("holdout_2 accuracy %.3f is not above chance (%.3f)", cand.Accuracy, chance)
		}
		return true, fmt.Sprintf("prod serves no trained model; holdout_2 accuracy %.3f, macro-F1 %.3f", cand.Accuracy, cand.MacroF1)
	}
	if cand.MacroF1 < prod.MacroF1+g.Margin {
		return false, fmt.Sprintf("holdout_2 macro-F1 %.3f does not beat prod's %.3f by %.2f", cand.MacroF1, prod.MacroF1, g.Margin)
	}
	var drops []string
	classes := make([]string, 0, len(cand.Support))
	for c := range cand.Support {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	for _, c := range classes {
		if cand.Support[c] < g.MinClassImages {
			continue
		}
		if was, ok := prod.Recall[c]; ok && was-cand.Recall[c] > g.MaxRecallDrop+1e-12 {
			drops = append(drops, fmt.Sprintf("%s %.2f -> %.2f", c, was, cand.Recall[c]))
		}
	}
	if len(drops) > 0 {
		return false, fmt.Sprintf("holdout_2 recall drops by more than %.2f: %s", g.MaxRecallDrop, strings.Join(drops, ", "))
	}
	return true, fmt.Sprintf("holdout_2 macro-F1 %.3f beats prod's %.3f by at least %.2f, no class loses more than %.2f recall", cand.MacroF1, prod.MacroF1, g.Margin, g.MaxRecallDrop)
}

// LiveStats summarise live predictions of one model version in one env.
type LiveStats struct {
	Predictions   int
	LowConfidence int
	// Labelled predictions had a true label; Correct of them were right.
	Labelled, Correct int
	// DriftFiring counts drift alerts that fired for the version.
	DriftFiring int
}

// LowRate is the share of low-confidence predictions.
func (s LiveStats) LowRate() float64 {
	if s.Predictions == 0 {
		return 0
	}
	return float64(s.LowConfidence) / float64(s.Predictions)
}

// Accuracy is the share of labelled predictions that were right.
func (s LiveStats) Accuracy() float64 {
	if s.Labelled == 0 {
		return 0
	}
	return float64(s.Correct) / float64(s.Labelled)
}

// Verdicts of ProdGate.
const (
	VerdictWait    = "wait"
	VerdictPromote = "promote"
	VerdictRefuse  = "refuse"
)

// ProdGate decides whether the canary goes to prod, from its live figures
// and prod's over the same period.
func (g GateConfig) ProdGate(canary, prod LiveStats) (string, string) {
	if canary.Predictions < g.CanaryMin {
		return VerdictWait, fmt.Sprintf("canary served %d of %d live predictions", canary.Predictions, g.CanaryMin)
	}
	if canary.LowRate() > prod.LowRate()+g.LowConfidenceSlack {
		return VerdictRefuse, fmt.Sprintf("canary low-confidence rate %.3f is worse than prod's %.3f", canary.LowRate(), prod.LowRate())
	}
	if canary.DriftFiring > prod.DriftFiring {
		return VerdictRefuse, fmt.Sprintf("canary fired %d drift alerts, prod %d over the same period", canary.DriftFiring, prod.DriftFiring)
	}
	return VerdictPromote, fmt.Sprintf("canary served %d live predictions: low-confidence rate %.3f (prod %.3f), drift alerts %d (prod %d)",
		canary.Predictions, canary.LowRate(), prod.LowRate(), canary.DriftFiring, prod.DriftFiring)
}

// ShouldRollback decides whether prod goes back to its previous version:
// the new version fired drift within the rollback window and its labelled
// feedback since promotion is less accurate than the previous version's
// (prevAccuracy: its labelled feedback, or its holdout_2 accuracy).
func (g GateConfig) ShouldRollback(driftWithinWindow bool, current LiveStats, prevAccuracy float64) (bool, string) {
	if !driftWithinWindow {
		return false, ""
	}
	if current.Labelled == 0 {
		return false, "drift fired, but no labelled feedback yet"
	}
	if current.Accuracy() >= prevAccuracy {
		return false, fmt.Sprintf("drift fired, but labelled accuracy %.3f is not below the previous version's %.3f", current.Accuracy(), prevAccuracy)
	}
	return true, fmt.Sprintf("drift fired within %d predictions of the promotion and labelled accuracy %.3f (%d/%d) is below the previous version's %.3f",
		g.RollbackWindow, current.Accuracy(), current.Correct, current.Labelled, prevAccuracy)
}
