package trainer

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"eyeflow/schemas"
	"eyeflow/stats"
)

// GateConfig are the promotion rules: pre-specified tests, not point
// estimates (issue 24).
type GateConfig struct {
	// NonInferiority is how much less accurate than prod a candidate may be
	// on holdout_2's earlier images: the lower bound of the paired accuracy
	// difference must be above -NonInferiority (default 0.05).
	NonInferiority float64
	// Alpha is the error rate of every test: intervals are 1-Alpha, a class
	// is harmed when its Holm-corrected McNemar p-value is at most Alpha
	// (default 0.05).
	Alpha float64
	// MinSensitivity and MinSpecificity (0: off) are clinical floors for any
	// disease against NormalClass, judged on the lower bound of the Wilson
	// interval on holdout_2.
	MinSensitivity, MinSpecificity float64
	NormalClass                    string
	// CanaryMin is the fewest live predictions the canary serves before it
	// can go to prod; the low-confidence margin may ask for more (default 0:
	// the margin decides).
	CanaryMin int
	// LowConfidence is the confidence below which a live prediction counts
	// as low (the drift rule's threshold, default 0.5); LowConfidenceSlack
	// is how much higher the canary's low-confidence rate may be than
	// prod's (default 0.10): the canary goes to prod when the upper bound of
	// the difference is below it, judged once, at the number of predictions
	// that margin needs.
	LowConfidence      float64
	LowConfidenceSlack float64
	// RollbackWindow is how many prod predictions after a promotion a drift
	// alert may come within to trigger a rollback (default 500).
	RollbackWindow int
	// BootstrapRounds are the paired bootstrap's resamples (0: 2000; -1:
	// none, for simulations). The bootstrap intervals are reported; the
	// decisions read the sequence.
	BootstrapRounds int
}

// DefaultGate returns the defaults above.
func DefaultGate() GateConfig {
	return GateConfig{NonInferiority: 0.05, Alpha: 0.05, NormalClass: "normal",
		LowConfidence: 0.5, LowConfidenceSlack: 0.10, RollbackWindow: 500}
}

// Verdicts of the gates.
const (
	VerdictWait    = "wait"
	VerdictHold    = "hold"
	VerdictPromote = "promote"
	VerdictRefuse  = "refuse"
)

// Results of one comparison or floor.
const (
	resultShown     = "shown"
	resultRefuted   = "refuted"
	resultUndecided = "undecided"
)

// bootstrapDiffRounds is the paired bootstrap's resamples.
const bootstrapDiffRounds = 2000

// decideLimit caps the images-to-decide estimate.
const decideLimit = 20000

// methodCS names the decisions' interval.
const methodCS = "betting confidence sequence (Waudby-Smith & Ramdas 2024), valid over repeated looks"

// GateInput is what the canary gate compares: the candidate's and the
// baseline's answers on the same holdout_2 images.
type GateInput struct {
	Candidate []ImagePrediction
	// Baseline are prod's answers; nil when prod serves no trained model,
	// then Majority (the train split's most frequent class) is the baseline.
	Baseline     []ImagePrediction
	BaselineName string
	Majority     string
	// Population are the image ids a drift alert asked to label (a retrain
	// requested by drift); empty otherwise.
	Population map[string]bool
	// Order is the order the images were first compared in at earlier
	// looks; new images follow it, by id. The confidence sequence reads the
	// images in this order, so every look extends the one before.
	Order []string
	// Look counts this look (1 the first).
	Look int
}

// Decision is a gate's verdict with its evidence.
type Decision struct {
	Verdict  string
	Reason   string
	Evidence schemas.Evidence
	// Order is GateInput.Order extended by this look's new images.
	Order []string
}

type pair struct {
	id, class, candPred, basePred string
}

func (p pair) d() float64 {
	c, b := p.candPred == p.class, p.basePred == p.class
	switch {
	case c && !b:
		return 1
	case b && !c:
		return -1
	}
	return 0
}

// CanaryGate decides whether a candidate may go to canary (see the README's
// "Gate and rollout"): (a) not worse than prod on holdout_2's earlier
// images (the lower bound of the paired accuracy difference above
// -NonInferiority) and no class significantly harmed (exact one-sided
// McNemar per class, Holm across classes, at Alpha); (b) for a retrain
// requested by drift, better on the drifted population's images (lower
// bound above 0); with no trained prod, better than the majority class.
// Clinical floors, when set, must hold on the Wilson lower bound. Too few
// images for a verdict is a hold.
func (g GateConfig) CanaryGate(in GateInput) Decision {
	ev := schemas.Evidence{Test: "canary_gate", Baseline: in.BaselineName, Alpha: g.Alpha, NonInferiority: g.NonInferiority, Method: methodCS, Look: in.Look}
	base := map[string]ImagePrediction{}
	for _, p := range in.Baseline {
		base[p.ImageID] = p
	}
	byID := map[string]pair{}
	for _, c := range in.Candidate {
		p := pair{id: c.ImageID, class: c.Class, candPred: c.Predicted}
		if in.Baseline == nil {
			p.basePred = in.Majority
		} else if b, ok := base[c.ImageID]; ok && b.Class == c.Class {
			p.basePred = b.Predicted
		} else {
			continue // not answered by both: not paired
		}
		byID[p.id] = p
	}
	order := make([]string, 0, len(byID))
	seen := map[string]bool{}
	for _, id := range in.Order {
		if _, ok := byID[id]; ok && !seen[id] {
			order, seen[id] = append(order, id), true
		}
	}
	var fresh []string
	for id := range byID {
		if !seen[id] {
			fresh = append(fresh, id)
		}
	}
	slices.Sort(fresh)
	order = append(order, fresh...)
	pairs := make([]pair, len(order))
	for i, id := range order {
		pairs[i] = byID[id]
	}
	dec := Decision{Order: order}
	if len(pairs) == 0 {
		ev.Decision = VerdictHold
		ev.Summary = "hold: insufficient evidence: no holdout_2 image answered by both the candidate and the baseline"
		dec.Verdict, dec.Reason, dec.Evidence = VerdictHold, ev.Summary, ev
		return dec
	}
	var parts []string
	if in.Baseline == nil {
		c := g.compare("holdout_2", "superior", 0, pairs)
		ev.Comparisons = append(ev.Comparisons, c)
		parts = append(parts, describe(c, "holdout_2 images than always answering "+in.Majority))
	} else {
		var earlier, drifted []pair
		for _, p := range pairs {
			if in.Population[p.id] {
				drifted = append(drifted, p)
			} else {
				earlier = append(earlier, p)
			}
		}
		if len(earlier) > 0 || len(in.Population) == 0 {
			c := g.compare("earlier", "non_inferior", -g.NonInferiority, earlier)
			ev.Comparisons = append(ev.Comparisons, c)
			parts = append(parts, describe(c, "earlier holdout_2 images"))
		}
		if len(in.Population) > 0 {
			c := g.compare("drifted", "superior", 0, drifted)
			ev.Comparisons = append(ev.Comparisons, c)
			parts = append(parts, describe(c, "holdout_2 images of the population the drift alert asked for"))
		}
		ev.Classes = classTests(pairs, g.Alpha)
		parts = append(parts, describeClasses(ev.Classes))
	}
	ev.Floors = g.floors(pairs)
	for _, f := range ev.Floors {
		parts = append(parts, fmt.Sprintf("%s %s on %d images (%.2f, 95%% CI %.2f to %.2f; floor %.2f)",
			f.Metric, map[string]string{resultShown: "above its floor", resultRefuted: "below its floor", resultUndecided: "not yet shown above its floor"}[f.Result],
			f.Images, f.Interval.Estimate, f.Interval.Lo, f.Interval.Hi, f.Min))
	}
	verdict := VerdictPromote
	need := 0 // images to decide: -1 too many to say, MinInt never at this difference
	for _, c := range ev.Comparisons {
		switch c.Result {
		case resultRefuted:
			verdict = VerdictRefuse
		case resultUndecided:
			if verdict != VerdictRefuse {
				verdict = VerdictHold
			}
			switch {
			case need < 0:
			case c.ImagesToDecide > 0:
				need = max(need, c.ImagesToDecide)
			case c.ImagesToDecide < 0:
				need = -1
			default:
				need = math.MinInt // the observed difference is on the wrong side
			}
		}
	}
	for _, c := range ev.Classes {
		if c.Harmed {
			verdict = VerdictRefuse
		}
	}
	for _, f := range ev.Floors {
		switch f.Result {
		case resultRefuted:
			verdict = VerdictRefuse
		case resultUndecided:
			if verdict != VerdictRefuse {
				verdict = VerdictHold
			}
		}
	}
	line := strings.Join(parts, "; ")
	switch verdict {
	case VerdictHold:
		switch {
		case need > 0:
			ev.ImagesToDecide = need
			line = fmt.Sprintf("hold: insufficient evidence (about %d labelled holdout_2 images like these would decide it): %s", need, line)
		case need == -1:
			line = "hold: insufficient evidence (thousands of labelled images at the observed difference): " + line
		case need == math.MinInt:
			line = "hold: insufficient evidence (at the observed difference no number of images would show it): " + line
		default:
			line = "hold: insufficient evidence: " + line
		}
	case VerdictRefuse:
		line = "refused: " + line
	}
	ev.Decision, ev.Summary = verdict, line
	dec.Verdict, dec.Reason, dec.Evidence = verdict, line, ev
	return dec
}

// compare tests one population's paired differences against threshold.
func (g GateConfig) compare(population, hypothesis string, threshold float64, pairs []pair) schemas.PairedComparison {
	c := schemas.PairedComparison{Population: population, Hypothesis: hypothesis, Threshold: threshold, Images: len(pairs), Result: resultUndecided}
	d := make([]float64, len(pairs))
	ids := make([]string, len(pairs))
	classIdx := map[string]int{}
	idx := func(s string) int {
		if i, ok := classIdx[s]; ok {
			return i
		}
		classIdx[s] = len(classIdx)
		return classIdx[s]
	}
	// Class indices in a canonical order, so the bootstrap sees the same
	// data however the pairs came.
	var names []string
	for _, p := range pairs {
		names = append(names, p.class, p.candPred, p.basePred)
	}
	slices.Sort(names)
	for _, n := range names {
		idx(n)
	}
	y, pc, pb := make([]int, len(pairs)), make([]int, len(pairs)), make([]int, len(pairs))
	for i, p := range pairs {
		d[i], ids[i] = p.d(), p.id
		switch d[i] {
		case 1:
			c.Better++
		case -1:
			c.Worse++
		}
		y[i], pc[i], pb[i] = idx(p.class), idx(p.candPred), idx(p.basePred)
	}
	if len(pairs) == 0 {
		c.Accuracy = schemas.Interval{Lo: -1, Hi: 1}
		return c
	}
	seq := stats.Bounds(d, g.Alpha)
	c.Accuracy = schemas.Interval{Estimate: round3(seq.Mean), Lo: seq.Lo, Hi: seq.Hi}
	rounds := g.BootstrapRounds
	if rounds <= 0 {
		rounds = bootstrapDiffRounds
	}
	if rounds < 0 {
		rounds = 0
	}
	bs := stats.PairedBootstrap(ids, y, pb, pc, len(classIdx), rounds, 1-g.Alpha)
	c.AccuracyBootstrap = schemas.Interval{Estimate: round3(bs.Accuracy.Estimate), Lo: round3(bs.Accuracy.Lo), Hi: round3(bs.Accuracy.Hi)}
	c.MacroF1Bootstrap = schemas.Interval{Estimate: round3(bs.MacroF1.Estimate), Lo: round3(bs.MacroF1.Lo), Hi: round3(bs.MacroF1.Hi)}
	switch {
	case seq.Lo > threshold && stats.Rejects(d, threshold, g.Alpha, true):
		c.Result = resultShown
	case seq.Hi < threshold && stats.Rejects(d, threshold, g.Alpha, false):
		c.Result = resultRefuted
	case seq.Mean > threshold:
		// -1: more than decideLimit.
		c.ImagesToDecide = stats.ToDecide(d, threshold, g.Alpha, true, min(decideLimit, max(1000, 20*len(d))))
		if c.ImagesToDecide == 0 {
			c.ImagesToDecide = -1
		}
	}
	return c
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// classTests is the exact one-sided McNemar test per class present, Holm
// across them.
func classTests(pairs []pair, alpha float64) []schemas.ClassComparison {
	by := map[string]*schemas.ClassComparison{}
	for _, p := range pairs {
		c := by[p.class]
		if c == nil {
			c = &schemas.ClassComparison{Class: p.class}
			by[p.class] = c
		}
		c.Images++
		switch p.d() {
		case 1:
			c.Better++
		case -1:
			c.Worse++
		}
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]schemas.ClassComparison, len(names))
	ps := make([]float64, len(names))
	for i, n := range names {
		out[i] = *by[n]
		out[i].P = stats.McNemar(out[i].Worse, out[i].Better)
		ps[i] = out[i].P
	}
	for i, h := range stats.Holm(ps) {
		out[i].P, out[i].HolmP = roundP(out[i].P), roundP(h)
		out[i].Harmed = h <= alpha
	}
	return out
}

// roundP keeps four significant digits: stable text, enough for a reader.
func roundP(p float64) float64 {
	if p == 0 {
		return 0
	}
	e := math.Pow(10, 3-math.Floor(math.Log10(p)))
	return math.Round(p*e) / e
}

// floors checks the clinical floors on the candidate's answers.
func (g GateConfig) floors(pairs []pair) []schemas.FloorCheck {
	var out []schemas.FloorCheck
	check := func(metric string, min float64, keep func(pair) bool, hit func(pair) bool) {
		if min <= 0 {
			return
		}
		f := schemas.FloorCheck{Metric: metric, Min: min, Result: resultUndecided}
		for _, p := range pairs {
			if keep(p) {
				f.Images++
				if hit(p) {
					f.Hits++
				}
			}
		}
		w := stats.Wilson(f.Hits, f.Images, 1-g.Alpha)
		f.Interval = schemas.Interval{Estimate: round3(w.Estimate), Lo: round3(w.Lo), Hi: round3(w.Hi)}
		switch {
		case f.Images > 0 && w.Lo >= min:
			f.Result = resultShown
		case f.Images > 0 && w.Hi < min:
			f.Result = resultRefuted
		}
		out = append(out, f)
	}
	normal := g.NormalClass
	check("sensitivity", g.MinSensitivity, func(p pair) bool { return p.class != normal }, func(p pair) bool { return p.candPred != normal })
	check("specificity", g.MinSpecificity, func(p pair) bool { return p.class == normal }, func(p pair) bool { return p.candPred == normal })
	return out
}

// describe is one comparison in words.
func describe(c schemas.PairedComparison, what string) string {
	verb := map[string]map[string]string{
		"non_inferior": {resultShown: "not worse", resultRefuted: "worse", resultUndecided: "not yet shown not worse"},
		"superior":     {resultShown: "better", resultRefuted: "not better", resultUndecided: "not yet shown better"},
	}[c.Hypothesis][c.Result]
	if c.Images == 0 {
		return fmt.Sprintf("%s: no %s yet", verb, what)
	}
	s := fmt.Sprintf("%s on %d %s (%+.2f, 95%% CI %+.2f to %+.2f", verb, c.Images, what, c.Accuracy.Estimate, c.Accuracy.Lo, c.Accuracy.Hi)
	if c.Hypothesis == "non_inferior" {
		s += fmt.Sprintf("; margin -%.2f", -c.Threshold)
	}
	return s + ")"
}

func describeClasses(cs []schemas.ClassComparison) string {
	var harmed []string
	smallest := 1.0
	for _, c := range cs {
		smallest = min(smallest, c.HolmP)
		if c.Harmed {
			harmed = append(harmed, fmt.Sprintf("%s (%d worse, %d better of %d images; McNemar p %s, Holm p %s)",
				c.Class, c.Worse, c.Better, c.Images, fmtP(c.P), fmtP(c.HolmP)))
		}
	}
	if len(harmed) > 0 {
		return "class harmed: " + strings.Join(harmed, ", ")
	}
	return fmt.Sprintf("no class harmed (smallest Holm p %s)", fmtP(smallest))
}

func fmtP(p float64) string {
	if p < 0.001 {
		return fmt.Sprintf("%.1e", p)
	}
	if p < 0.01 {
		return fmt.Sprintf("%.3f", p)
	}
	return fmt.Sprintf("%.2f", p)
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

// MinLive is how many live canary predictions the low-confidence margin
// needs: the two-proportion sample size that tells rates near prod's apart
// by LowConfidenceSlack at Alpha/2 (one side of the 1-Alpha interval) with
// 80% power, and at least CanaryMin.
func (g GateConfig) MinLive(prod LiveStats) int {
	p := 0.2 // before prod has served anything
	if prod.Predictions > 0 {
		p = prod.LowRate()
	}
	return max(g.CanaryMin, stats.TwoProportionSampleSize(p, g.LowConfidenceSlack, g.Alpha/2, 0.8))
}

// ProdGate decides whether the canary goes to prod, from its first live
// predictions and prod's over the same period, and the labelled live
// images both the candidate (shadowing in staging) and prod answered
// (paired: +1 the candidate right and prod wrong, -1 the opposite, in
// arrival order). It waits until the canary served MinLive predictions;
// then the low-confidence rates decide once, by the two-proportion test:
// promote when the upper bound of the difference is below
// LowConfidenceSlack. At any look, labelled feedback that shows the
// candidate worse than prod by more than NonInferiority (the confidence
// sequence's upper bound below the margin), or more drift alerts, refuse.
func (g GateConfig) ProdGate(canary, prod LiveStats, paired []float64) Decision {
	ev := schemas.Evidence{Test: "prod_gate", Baseline: "prod", Alpha: g.Alpha, NonInferiority: g.NonInferiority, Method: methodCS}
	need := g.MinLive(prod)
	rc := stats.TwoProportion(canary.LowConfidence, canary.Predictions, prod.LowConfidence, prod.Predictions, 1-g.Alpha)
	ev.LowConfidence = &schemas.RateComparison{Candidate: canary.LowConfidence, CandidateTotal: canary.Predictions,
		Baseline: prod.LowConfidence, BaselineTotal: prod.Predictions, Margin: g.LowConfidenceSlack, MinPredictions: need,
		P:          roundP(rc.PGreater),
		Difference: schemas.Interval{Estimate: round3(rc.Diff.Estimate), Lo: round3(rc.Diff.Lo), Hi: round3(rc.Diff.Hi)}}
	var parts []string
	verdict := VerdictWait
	if len(paired) > 0 {
		seq := stats.Bounds(paired, g.Alpha)
		c := schemas.PairedComparison{Population: "live", Hypothesis: "non_inferior", Threshold: -g.NonInferiority, Images: len(paired),
			Accuracy: schemas.Interval{Estimate: round3(seq.Mean), Lo: seq.Lo, Hi: seq.Hi}, Result: resultUndecided}
		for _, x := range paired {
			if x > 0 {
				c.Better++
			} else if x < 0 {
				c.Worse++
			}
		}
		if seq.Lo > -g.NonInferiority && stats.Rejects(paired, -g.NonInferiority, g.Alpha, true) {
			c.Result = resultShown
		} else if seq.Hi < -g.NonInferiority && stats.Rejects(paired, -g.NonInferiority, g.Alpha, false) {
			c.Result = resultRefuted
			verdict = VerdictRefuse
		}
		ev.Comparisons = append(ev.Comparisons, c)
		parts = append(parts, describe(c, "labelled live images both answered"))
	}
	lc := fmt.Sprintf("low-confidence rate %.3f on %d live predictions against prod's %.3f on %d (difference %+.3f, 95%% CI %+.3f to %+.3f; margin %.2f)",
		rc.P1, canary.Predictions, rc.P2, prod.Predictions, rc.Diff.Estimate, rc.Diff.Lo, rc.Diff.Hi, g.LowConfidenceSlack)
	switch {
	case verdict == VerdictRefuse:
	case canary.DriftFiring > prod.DriftFiring:
		verdict = VerdictRefuse
		parts = append(parts, fmt.Sprintf("canary fired %d drift alerts, prod %d over the same period", canary.DriftFiring, prod.DriftFiring))
	case canary.Predictions < need:
		parts = append(parts, fmt.Sprintf("canary served %d of the %d live predictions a low-confidence margin of %.2f needs", canary.Predictions, need, g.LowConfidenceSlack))
	case rc.Diff.Hi < g.LowConfidenceSlack:
		verdict = VerdictPromote
		parts = append(parts, "not more often unsure: "+lc)
	default:
		verdict = VerdictRefuse
		parts = append(parts, "more often unsure than the margin allows: "+lc)
	}
	line := strings.Join(parts, "; ")
	if verdict == VerdictRefuse {
		line = "refused: " + line
	}
	ev.Decision, ev.Summary = verdict, line
	return Decision{Verdict: verdict, Reason: line, Evidence: ev}
}

// ShouldRollback decides whether prod goes back to its previous version:
// the new version fired drift within the rollback window and its labelled
// feedback since promotion is significantly less accurate than the
// previous version's (prevCorrect of prevTotal: its labelled feedback, or
// its holdout_2 figures), by the one-sided two-proportion test at Alpha.
func (g GateConfig) ShouldRollback(driftWithinWindow bool, current LiveStats, prevCorrect, prevTotal int) (bool, string) {
	if !driftWithinWindow {
		return false, ""
	}
	if current.Labelled == 0 {
		return false, "drift fired, but no labelled feedback yet"
	}
	r := stats.TwoProportion(prevCorrect, prevTotal, current.Correct, current.Labelled, 1-g.Alpha)
	if r.PGreater > g.Alpha {
		return false, fmt.Sprintf("drift fired, but labelled accuracy %.3f (%d/%d) is not significantly below the previous version's %.3f (%d/%d; p %s)",
			current.Accuracy(), current.Correct, current.Labelled, r.P1, prevCorrect, prevTotal, fmtP(r.PGreater))
	}
	return true, fmt.Sprintf("drift fired within %d predictions of the promotion and labelled accuracy %.3f (%d/%d) is below the previous version's %.3f (%d/%d; difference %+.2f, 95%% CI %+.2f to %+.2f; one-sided p %s)",
		g.RollbackWindow, current.Accuracy(), current.Correct, current.Labelled, r.P1, prevCorrect, prevTotal,
		r.P2-r.P1, -r.Diff.Hi, -r.Diff.Lo, fmtP(r.PGreater))
}
