package driftwatch

import (
	"errors"
	"fmt"

	"eyeflow/bus"
)

// Signals published in DriftAlert.Signal.
const (
	SignalLowConfidence = "low_confidence_streak"
	SignalEntropyKS     = "entropy_ks"
	SignalClassChi2     = "class_chi2"
)

// Alert states.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// KVBucket is the key-value bucket holding one state per (env, model
// version), the one New is given: history 1 (only the latest state
// matters), no TTL (a streak or a firing alert must survive any pause of
// the stream).
const KVBucket = bus.KVDriftwatch

// Config configures the watcher. Start from DefaultConfig.
type Config struct {
	// Threshold and Count are the operators' rule: Count consecutive
	// predictions (per env and model version, in stream order) with a
	// confidence below Threshold fire low_confidence_streak.
	Threshold float64
	Count     int
	// LabelSamples is how many of a drifted window's images a firing
	// entropy_ks or class_chi2 alert asks to have labelled (eye.retrain
	// requested), as a firing streak asks for its Count images.
	LabelSamples int
	KS           KSConfig
	Chi2         Chi2Config
}

// KSConfig configures entropy_ks: the entropy of each monitored prediction
// (split unlabeled or none: live traffic) is collected in tumbling windows of
// Window predictions; each full window is compared with the reference (the
// entropies of the last Reference predictions on holdout splits of the same
// env and model version) by a two-sample Kolmogorov-Smirnov test. The alert
// fires on the first window with p < PValue and resolves on the first later
// window with p >= PValue. A window that fills before the reference holds
// MinReference predictions is discarded untested.
type KSConfig struct {
	Enabled      bool
	Window       int
	Reference    int
	MinReference int
	PValue       float64
}

// Chi2Config configures class_chi2: the predicted classes of monitored
// predictions are counted in tumbling windows of Window predictions, and each
// full window is tested against the training split's class distribution
// with a chi-square goodness-of-fit test (fires at p < PValue, resolves at
// p >= PValue). The training distribution is TrainDistribution when set (class
// -> count or proportion, e.g. from the splitter's dataset report); otherwise
// it is learnt from the stream: the true labels of predictions on the train
// split of the same env and model version, used once MinTrain of them are
// seen. Smoothing is a pseudo-proportion added to every class's expected
// share, so a class absent from training cannot make the statistic infinite.
type Chi2Config struct {
	Enabled           bool
	Window            int
	PValue            float64
	MinTrain          int
	Smoothing         float64
	TrainDistribution map[string]float64
}

// DefaultConfig is the operators' rule (5 below 0.5) and both distribution
// monitors on windows of 200 at p < 0.01.
func DefaultConfig() Config {
	return Config{
		Threshold:    0.5,
		Count:        5,
		LabelSamples: 20,
		KS:           KSConfig{Enabled: true, Window: 200, Reference: 1000, MinReference: 100, PValue: 0.01},
		Chi2:         Chi2Config{Enabled: true, Window: 200, PValue: 0.01, MinTrain: 100, Smoothing: 1e-3},
	}
}

// Validate reports a configuration the watcher cannot run with.
func (c Config) Validate() error {
	var errs []error
	if !(c.Threshold > 0 && c.Threshold <= 1) {
		errs = append(errs, fmt.Errorf("driftwatch: threshold %v: must be in (0, 1]", c.Threshold))
	}
	if c.Count < 1 {
		errs = append(errs, fmt.Errorf("driftwatch: count %d: must be at least 1", c.Count))
	}
	if c.LabelSamples < 0 {
		errs = append(errs, fmt.Errorf("driftwatch: label samples %d: must not be negative", c.LabelSamples))
	}
	if c.KS.Enabled {
		if c.KS.Window < 10 || c.KS.Reference < 10 || c.KS.MinReference < 10 || c.KS.MinReference > c.KS.Reference {
			errs = append(errs, fmt.Errorf("driftwatch: ks window %d, reference %d, min reference %d: want at least 10 each and min <= reference",
				c.KS.Window, c.KS.Reference, c.KS.MinReference))
		}
		if !(c.KS.PValue > 0 && c.KS.PValue < 1) {
			errs = append(errs, fmt.Errorf("driftwatch: ks p-value %v: must be in (0, 1)", c.KS.PValue))
		}
	}
	if c.Chi2.Enabled {
		if c.Chi2.Window < 10 || c.Chi2.MinTrain < 1 {
			errs = append(errs, fmt.Errorf("driftwatch: chi2 window %d, min train %d: want a window of at least 10", c.Chi2.Window, c.Chi2.MinTrain))
		}
		if !(c.Chi2.PValue > 0 && c.Chi2.PValue < 1) {
			errs = append(errs, fmt.Errorf("driftwatch: chi2 p-value %v: must be in (0, 1)", c.Chi2.PValue))
		}
		if c.Chi2.Smoothing < 0 {
			errs = append(errs, fmt.Errorf("driftwatch: chi2 smoothing %v: must not be negative", c.Chi2.Smoothing))
		}
		for class, w := range c.Chi2.TrainDistribution {
			if w < 0 {
				errs = append(errs, fmt.Errorf("driftwatch: train distribution %s=%v: must not be negative", class, w))
			}
		}
	}
	return errors.Join(errs...)
}
