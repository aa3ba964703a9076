package dashboard

import (
	"slices"
	"testing"

	"eyeflow/bus"
	"eyeflow/pipeline"
	"eyeflow/schemas"
)

// TestStageRowsFollowTheCatalogue: the stage table has a row for every
// stage of the catalogue in its order, even one with nothing on the server
// yet, names the declared consumers the server lacks, and still shows a
// stage the catalogue does not know after the others.
func TestStageRowsFollowTheCatalogue(t *testing.T) {
	snap := Snapshot{
		Consumers: []ConsumerStat{
			{Stream: bus.StreamUploads, Name: bus.ConsumerResize, Stage: StageOfConsumer(bus.ConsumerResize), Pending: 4},
			{Stream: bus.StreamSplits, Name: bus.ClassifierConsumer(schemas.EnvProd), Stage: StageOfConsumer(bus.ClassifierConsumer(schemas.EnvProd))},
			{Stream: bus.StreamUploads, Name: "someone-elses", Stage: StageOfConsumer("someone-elses")},
		},
		DLQ: []DLQStat{{Stage: schemas.StageSplitter, Count: 2}},
	}
	rows := stageRows(snap, nil)
	var names []string
	byName := map[string]stageRow{}
	for _, r := range rows {
		names = append(names, r.Stage)
		byName[r.Stage] = r
	}
	want := append(pipeline.Names(), "someone-elses")
	if !slices.Equal(names, want) {
		t.Fatalf("rows %v, want %v", names, want)
	}
	if r := byName[schemas.StageResize]; r.Pending != 4 || len(r.Missing) != 0 {
		t.Errorf("resize row %+v", r)
	}
	cls := byName[schemas.StageClassifier]
	if !slices.Equal(cls.Consumers, []string{bus.ClassifierConsumer(schemas.EnvProd)}) ||
		!slices.Equal(cls.Missing, []string{bus.ClassifierConsumer(schemas.EnvCanary), bus.ClassifierConsumer(schemas.EnvStaging)}) {
		t.Errorf("classifier row: consumers %v missing %v", cls.Consumers, cls.Missing)
	}
	if r := byName[schemas.StageLabelsink]; !slices.Equal(r.Missing, []string{bus.ConsumerLabelsink}) {
		t.Errorf("labelsink row missing %v: the optional predictions consumer is not required", r.Missing)
	}
	if r := byName[schemas.StageSplitter]; !r.HasDLQ || r.DLQ.Count != 2 {
		t.Errorf("splitter row %+v", r)
	}
	if r := byName["someone-elses"]; len(r.Missing) != 0 || !slices.Equal(r.Consumers, []string{"someone-elses"}) {
		t.Errorf("unknown stage row %+v", r)
	}
}
