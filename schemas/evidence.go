package schemas

// Evidence is what a gate decision rests on: the pre-specified test, the
// images compared (per population and per class), the differences with
// their intervals, the p-values and the margins in force. It rides on the
// eye.models event of the decision (optional: events before it have none)
// and in the rollout record.
type Evidence struct {
	// Test names the rule: "canary_gate" (staging -> canary), "prod_gate"
	// (canary -> prod) or "rollback".
	Test string `json:"test"`
	// Decision is "promote", "refuse" or "hold" (insufficient evidence).
	Decision string `json:"decision"`
	// Baseline is what the candidate was compared with: "prod NAME VERSION"
	// or "majority class CLASS" when prod serves no trained model.
	Baseline string `json:"baseline"`
	// Alpha is the error rate of the tests (the intervals are 1-alpha).
	Alpha float64 `json:"alpha"`
	// NonInferiority is the margin in force: the candidate may be at most
	// this much less accurate than the baseline.
	NonInferiority float64 `json:"noninferiority_margin"`
	// Method names the interval the decisions read: "betting confidence
	// sequence (Waudby-Smith & Ramdas 2024)", always valid over repeated looks.
	Method string `json:"method,omitempty"`
	// Look counts the gate's looks at this candidate (1 the first).
	Look        int                `json:"look,omitempty"`
	Comparisons []PairedComparison `json:"comparisons,omitempty"`
	Classes     []ClassComparison  `json:"classes,omitempty"`
	Floors      []FloorCheck       `json:"floors,omitempty"`
	// LowConfidence compares low-confidence rates (canary -> prod, rollback).
	LowConfidence *RateComparison `json:"low_confidence,omitempty"`
	// ImagesToDecide estimates how many labelled images in all would decide a
	// hold if the ones to come were like those seen (0: not at the observed
	// difference).
	ImagesToDecide int `json:"images_to_decide,omitempty"`
	// Summary is the decision in one line a clinician can read.
	Summary string `json:"summary"`
}

// Interval is an estimate with its lower and upper bound.
type Interval struct {
	Estimate float64 `json:"estimate"`
	Lo       float64 `json:"lo"`
	Hi       float64 `json:"hi"`
}

// PairedComparison compares candidate and baseline on the same images of one
// population.
type PairedComparison struct {
	// Population: "holdout_2" (every image), "earlier" (holdout_2's images
	// from before the drift), "drifted" (the images the drift alert asked
	// for), "live" (labelled live feedback both answered).
	Population string `json:"population"`
	// Hypothesis: "non_inferior" (difference above -margin) or "superior"
	// (above 0); Threshold is that bound.
	Hypothesis string  `json:"hypothesis"`
	Threshold  float64 `json:"threshold"`
	Images     int     `json:"images"`
	// Better and Worse count the discordant images: the candidate right and
	// the baseline wrong, and the opposite.
	Better int `json:"better"`
	Worse  int `json:"worse"`
	// Accuracy is the accuracy difference (candidate minus baseline) with the
	// bounds of the always-valid confidence sequence the decision reads.
	Accuracy Interval `json:"accuracy"`
	// AccuracyBootstrap and MacroF1Bootstrap are paired percentile bootstrap
	// intervals of the differences (fixed-sample; reported, not decided on).
	AccuracyBootstrap Interval `json:"accuracy_bootstrap"`
	MacroF1Bootstrap  Interval `json:"macro_f1_bootstrap"`
	// Result: "shown", "refuted" (the bound is on the wrong side) or
	// "undecided".
	Result string `json:"result"`
	// ImagesToDecide: see Evidence.ImagesToDecide; -1: more than the
	// estimate looks ahead (thousands).
	ImagesToDecide int `json:"images_to_decide,omitempty"`
}

// ClassComparison is the exact one-sided McNemar test that the candidate
// is worse than the baseline on one class's images, Holm-corrected across
// classes.
type ClassComparison struct {
	Class  string  `json:"class"`
	Images int     `json:"images"`
	Better int     `json:"better"`
	Worse  int     `json:"worse"`
	P      float64 `json:"p"`
	HolmP  float64 `json:"holm_p"`
	Harmed bool    `json:"harmed"`
}

// FloorCheck is a clinical floor: sensitivity (any disease against normal)
// or specificity, judged on the lower bound of its Wilson interval.
type FloorCheck struct {
	Metric   string   `json:"metric"`
	Min      float64  `json:"min"`
	Images   int      `json:"images"`
	Hits     int      `json:"hits"`
	Interval Interval `json:"interval"`
	Result   string   `json:"result"`
}

// RateComparison compares the share of low-confidence predictions of the
// candidate with the baseline's (two-proportion test, Newcombe's interval of
// the difference).
type RateComparison struct {
	Candidate      int      `json:"candidate"`
	CandidateTotal int      `json:"candidate_total"`
	Baseline       int      `json:"baseline"`
	BaselineTotal  int      `json:"baseline_total"`
	Difference     Interval `json:"difference"`
	// P is the one-sided p-value that the candidate's rate is the higher.
	P      float64 `json:"p"`
	Margin float64 `json:"margin"`
	// MinPredictions is how many live predictions the margin needs.
	MinPredictions int `json:"min_predictions"`
}
