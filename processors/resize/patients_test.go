package resize_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/dicomtest"
	"eyeflow/internal/testenv"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestPatientsThroughResizeAndSplitter runs the resize and split stages on
// embedded NATS with one patient's images in three forms: an Ophthalmic
// Photography DICOM (PatientID in the file), a secondary-capture DICOM of
// the other eye, and a JPEG whose upload carries x-amz-meta-patient-id. All
// three share one patient hash and one split; neither eye.resized nor
// eye.split carries the PatientID, the name or the birth date; a DICOM in
// an unsupported transfer syntax (JPEG-LS, written by dcmtk) is
// dead-lettered as unsupported_image with a reason naming the syntax.
func TestPatientsThroughResizeAndSplitter(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := stage.NewMetrics(reg)
	scfg := splitter.DefaultConfig()
	scfg.Patients = f.patients // the deployment's one rule, as both stages get it
	sp, err := splitter.New(scfg, f.store)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- stage.Run(ctx, f.env.JS, resize.Processor(f.r, 2, zerolog.Nop(), m)) }()
	go func() { done <- stage.Run(ctx, f.env.JS, splitter.Processor(sp, zerolog.Nop(), m)) }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	left, right := fundusJPEG(t, 640, 480), fundusJPEG(t, 600, 400)
	opLeft := dicomtest.Img2DCM(t, left, "JPEG", dicomtest.OphthalmicArgs()...)
	scRight := dicomtest.Img2DCM(t, right, "JPEG")
	jpegLS := dicomtest.Convert(t, dicomtest.Convert(t, scRight, "dcmdjpeg"), "dcmcjpls")
	publish := func(ev schemas.S3Event) {
		t.Helper()
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.env.JS.Publish(testenv.Context(t, 10*time.Second), schemas.SubjectUploads, data); err != nil {
			t.Fatal(err)
		}
	}
	publish(f.put(t, "amd/visit1/left.dcm", opLeft, nil))
	publish(f.put(t, "normal/visit1/right.dcm", scRight, nil))
	publish(f.put(t, "amd/visit2/left.jpg", fundusJPEG(t, 500, 400), map[string]string{"patient-id": dicomtest.PatientID}))
	publish(f.put(t, "amd/visit3/left-ls.dcm", jpegLS, nil))
	testenv.WaitConsumerIdle(t, f.env.JS, bus.StreamUploads, bus.ConsumerResize)
	testenv.WaitConsumerIdle(t, f.env.JS, bus.StreamResized, bus.ConsumerSplitter)

	identifying := []string{dicomtest.PatientID, "Doe", "Jane", dicomtest.PatientBirthDate}
	wantHash := f.patients.Of(dicomtest.PatientID)
	check := func(subject string, ev schemas.Resized) {
		t.Helper()
		ev.RGB = nil // base64 pixels may spell anything
		js, _ := json.Marshal(ev)
		for _, s := range identifying {
			if bytes.Contains(js, []byte(s)) {
				t.Errorf("%s for %s carries %q", subject, ev.Source.Key, s)
			}
		}
		if ev.PatientHash != wantHash {
			t.Errorf("%s for %s: patient hash %q, want %q", subject, ev.Source.Key, ev.PatientHash, wantHash)
		}
	}
	sources := map[string]string{}
	for _, msg := range testenv.StreamMessages(t, f.env.JS, bus.StreamResized, schemas.SubjectResized) {
		r, err := schemas.DecodeResized(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		check("eye.resized", r)
		sources[r.Source.Key] = r.PatientSource
	}
	want := map[string]string{
		"amd/visit1/left.dcm":     schemas.PatientFromDICOM,
		"normal/visit1/right.dcm": schemas.PatientFromDICOM,
		"amd/visit2/left.jpg":     schemas.PatientFromMetadata,
	}
	if len(sources) != len(want) {
		t.Fatalf("eye.resized for %v, want %v", sources, want)
	}
	for k, v := range want {
		if sources[k] != v {
			t.Errorf("%s: patient source %q, want %q", k, sources[k], v)
		}
	}
	splits := map[string]bool{}
	for _, msg := range testenv.StreamMessages(t, f.env.JS, bus.StreamSplits, schemas.SubjectSplitAll) {
		s, err := schemas.DecodeSplit(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		check("eye.split", s.Resized)
		if s.SplitKey != splitter.KeyPatient {
			t.Errorf("%s keyed on %s", s.Source.Key, s.SplitKey)
		}
		splits[s.Split] = true
	}
	if len(splits) != 1 {
		t.Errorf("one patient's images in the splits %v", splits)
	}

	dls := testenv.StreamMessages(t, f.env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageResize))
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1 (the JPEG-LS DICOM)", len(dls))
	}
	dl, err := schemas.DecodeDeadLetter(dls[0].Data())
	if err != nil {
		t.Fatal(err)
	}
	if dl.Reason != schemas.ReasonUnsupportedImage || !dl.Permanent || !strings.Contains(dl.Error, "1.2.840.10008.1.2.4.80 (JPEG-LS Lossless) is not supported") {
		t.Errorf("dead letter %q %q, want permanent %s naming the transfer syntax", dl.Reason, dl.Error, schemas.ReasonUnsupportedImage)
	}
}
