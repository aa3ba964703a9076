package labelsink_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/processors/labelsink"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
)

// TestHostileExportKeys: an export file names the object to copy into
// raw/<class>/, and anyone who can write the labelling bucket can write
// one. Source keys that traverse, are too long or carry control bytes, and
// sources in other buckets (the models bucket, say) are dead-lettered as
// bad_key; a good key with a hostile extension still lands as
// <class>/<image-id>.jpg; nothing is written outside raw/<class>/.
func TestHostileExportKeys(t *testing.T) {
	f := newFixture(t)
	ctx := testenv.Context(t, time.Minute)
	f.put(t, "raw", "incoming/ok.jpg", []byte("jpeg bytes"))
	f.put(t, "raw", "incoming/odd.Jp-g;rm -rf", []byte("jpeg bytes 2"))
	f.put(t, "models", "densenet/1/model.onnx", []byte("weights"))
	export := func(i int, bucket, key string) []byte {
		id := testID(i)
		return annotationExport(id, "glaucoma", false, labelsink.Task{
			Data: labelsink.TaskData{Image: "s3://" + bucket + "/" + key, ImageID: id},
			Meta: labelsink.TaskMeta{ImageID: id, SourceBucket: bucket, SourceKey: key},
		})
	}
	tests := []struct {
		name, bucket, key, reason string
	}{
		{"traversal", "raw", "../../labeling/tasks/x.json", schemas.ReasonBadKey},
		{"backslash traversal", "raw", `incoming\..\..\x.jpg`, schemas.ReasonBadKey},
		{"absolute", "raw", "/etc/passwd", schemas.ReasonBadKey},
		{"encoded traversal", "raw", "%2e%2e/%2e%2e/x.jpg", schemas.ReasonBadKey},
		{"long", "raw", "incoming/" + strings.Repeat("x", 1100) + ".jpg", schemas.ReasonBadKey},
		{"control character", "raw", "incoming/a\nb.jpg", schemas.ReasonBadKey},
		{"another bucket", "models", "densenet/1/model.onnx", schemas.ReasonBadKey},
	}
	for i, tt := range tests {
		f.put(t, "labeling", fmt.Sprintf("exports/hostile-%02d.json", i), export(i, tt.bucket, tt.key))
	}
	f.put(t, "labeling", "exports/good-1.json", export(90, "raw", "incoming/ok.jpg"))
	f.put(t, "labeling", "exports/good-2.json", export(91, "raw", "incoming/odd.Jp-g;rm -rf"))
	if err := f.sink.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	dls := testenv.StreamMessages(t, f.env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageLabelsink))
	bySubject := map[string]schemas.DeadLetter{}
	for _, m := range dls {
		d, err := schemas.DecodeDeadLetter(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		bySubject[d.Subject] = d
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := bySubject[fmt.Sprintf("s3://labeling/exports/hostile-%02d.json", i)]
			if !ok || d.Reason != tt.reason || !d.Permanent {
				t.Fatalf("dead letter %+v (found %v), want reason %s", d, ok, tt.reason)
			}
		})
	}
	if len(dls) != len(tests) {
		t.Errorf("%d dead letters, want %d (the good exports are not dead-lettered)", len(dls), len(tests))
	}
	got := f.keys(t, "raw", "glaucoma/")
	want := []string{"glaucoma/" + testID(90) + ".jpg", "glaucoma/" + testID(91) + ".jpg"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("raw/glaucoma holds %q, want %q", got, want)
	}
	for _, k := range f.keys(t, "raw", "") {
		if objkey.Check(k) != nil && !strings.HasPrefix(k, "incoming/") {
			t.Errorf("raw holds unsafe key %q", k)
		}
	}
}
