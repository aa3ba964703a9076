package dashboard

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/schemas"

	"github.com/nats-io/nats.go/jetstream"
)

// Quality is model quality per env and model version, computed from the
// predictions that carry a true label, over a bounded window of the stream.
type Quality struct {
	// Window is how many of the latest predictions were read; Read how
	// many the stream had to give, from sequence FirstSeq to LastSeq.
	Window, Read      int
	FirstSeq, LastSeq uint64
	Models            []ModelQuality
	// Recent are the latest predictions, newest first, for the feed.
	Recent []FeedItem
	// Skipped counts messages that did not decode as predictions.
	Skipped int
}

// ModelQuality is one env and model version.
type ModelQuality struct {
	Env, ModelVersion string
	// Predictions counts every prediction of this env and version in the
	// window; Labelled those on a holdout with a true label.
	Predictions, Labelled int
	// Holdouts has one entry per holdout split, in order, even when empty.
	Holdouts []Accuracy
	// All is the accuracy over every holdout together.
	All Accuracy
	// Confusion is over every holdout: rows are true classes, columns
	// predicted ones.
	Confusion Confusion
}

// Accuracy is correct / total on one holdout.
type Accuracy struct {
	Split          string
	Correct, Total int
}

// Percent is the accuracy in percent; 0 when nothing was counted.
func (a Accuracy) Percent() float64 {
	if a.Total == 0 {
		return 0
	}
	return 100 * float64(a.Correct) / float64(a.Total)
}

// Confusion is a confusion matrix.
type Confusion struct {
	Classes []string
	// Cells[i][j] counts images of class Classes[i] predicted as Classes[j].
	Cells [][]int
	// RowTotals[i] counts images of class Classes[i].
	RowTotals []int
}

// FeedItem is one prediction as the live feed shows it.
type FeedItem struct {
	Time         time.Time `json:"time"`
	Env          string    `json:"env"`
	ModelVersion string    `json:"model_version"`
	ImageID      string    `json:"image_id"`
	Split        string    `json:"split"`
	TrueLabel    string    `json:"true_label,omitempty"`
	Predicted    string    `json:"predicted_class"`
	Confidence   float64   `json:"confidence"`
}

func feedItem(p schemas.Prediction) FeedItem {
	return FeedItem{Time: p.Time, Env: p.Env, ModelVersion: p.ModelVersion, ImageID: p.ImageID, Split: p.Split,
		TrueLabel: p.TrueLabel, Predicted: p.PredictedClass, Confidence: p.Confidence}
}

func isHoldout(split string) bool { return strings.HasPrefix(split, "holdout") }

func holdouts() []string {
	var out []string
	for _, s := range schemas.Splits() {
		if isHoldout(s) {
			out = append(out, s)
		}
	}
	return out
}

// ReadQuality reads the last window predictions of EYE_PREDICTIONS and
// computes Quality from them.
func ReadQuality(ctx context.Context, js jetstream.JetStream, window, recent int) (Quality, error) {
	msgs, err := readLast(ctx, js, bus.StreamPredictions, window)
	if err != nil {
		return Quality{}, fmt.Errorf("quality: %w", err)
	}
	preds := make([]schemas.Prediction, 0, len(msgs))
	q := Quality{Window: window, Read: len(msgs)}
	for _, m := range msgs {
		p, err := schemas.DecodePrediction(m.Data)
		if err != nil {
			q.Skipped++
			continue
		}
		if p.Env == "" {
			p.Env = strings.TrimPrefix(m.Subject, strings.TrimSuffix(schemas.SubjectPredictionsAll, "*"))
		}
		preds = append(preds, p)
	}
	if len(msgs) > 0 {
		q.FirstSeq, q.LastSeq = msgs[0].Seq, msgs[len(msgs)-1].Seq
	}
	q.Models = ComputeQuality(preds)
	for i := len(preds) - 1; i >= 0 && len(q.Recent) < recent; i-- {
		q.Recent = append(q.Recent, feedItem(preds[i]))
	}
	return q, nil
}

// ComputeQuality aggregates predictions (oldest first) per env and model
// version. An image predicted more than once by the same env and version
// (a re-upload, a replay outside the duplicate window) counts once, with
// its latest prediction, so it cannot weigh twice in the accuracy.
func ComputeQuality(preds []schemas.Prediction) []ModelQuality {
	type key struct{ env, version string }
	type agg struct {
		preds  int
		latest map[string]schemas.Prediction // image id -> latest labelled holdout prediction
	}
	aggs := map[key]*agg{}
	var order []key
	for _, p := range preds {
		k := key{p.Env, p.ModelVersion}
		a := aggs[k]
		if a == nil {
			a = &agg{latest: map[string]schemas.Prediction{}}
			aggs[k] = a
			order = append(order, k)
		}
		a.preds++
		if p.TrueLabel != "" && isHoldout(p.Split) {
			a.latest[p.ImageID] = p
		}
	}
	envRank := func(env string) int {
		if i := slices.Index(schemas.Envs(), env); i >= 0 {
			return i
		}
		return len(schemas.Envs())
	}
	sort.SliceStable(order, func(i, j int) bool {
		if ri, rj := envRank(order[i].env), envRank(order[j].env); ri != rj {
			return ri < rj
		}
		if order[i].env != order[j].env {
			return order[i].env < order[j].env
		}
		return order[i].version < order[j].version
	})
	out := make([]ModelQuality, 0, len(order))
	for _, k := range order {
		a := aggs[k]
		mq := ModelQuality{Env: k.env, ModelVersion: k.version, Predictions: a.preds, Labelled: len(a.latest), All: Accuracy{Split: "all holdouts"}}
		idx := map[string]int{}
		for _, h := range holdouts() {
			idx[h] = len(mq.Holdouts)
			mq.Holdouts = append(mq.Holdouts, Accuracy{Split: h})
		}
		classSet := map[string]bool{}
		for _, p := range a.latest {
			classSet[p.TrueLabel], classSet[p.PredictedClass] = true, true
		}
		classes := make([]string, 0, len(classSet))
		for c := range classSet {
			classes = append(classes, c)
		}
		slices.Sort(classes)
		ci := map[string]int{}
		for i, c := range classes {
			ci[c] = i
		}
		mq.Confusion = Confusion{Classes: classes, Cells: make([][]int, len(classes)), RowTotals: make([]int, len(classes))}
		for i := range mq.Confusion.Cells {
			mq.Confusion.Cells[i] = make([]int, len(classes))
		}
		for _, p := range a.latest {
			correct := p.PredictedClass == p.TrueLabel
			for _, acc := range []*Accuracy{holdoutAcc(&mq, idx, p.Split), &mq.All} {
				if acc == nil {
					continue
				}
				acc.Total++
				if correct {
					acc.Correct++
				}
			}
			mq.Confusion.Cells[ci[p.TrueLabel]][ci[p.PredictedClass]]++
			mq.Confusion.RowTotals[ci[p.TrueLabel]]++
		}
		out = append(out, mq)
	}
	return out
}

func holdoutAcc(mq *ModelQuality, idx map[string]int, split string) *Accuracy {
	i, ok := idx[split]
	if !ok {
		return nil // a holdout this build does not know: counted in All only
	}
	return &mq.Holdouts[i]
}
