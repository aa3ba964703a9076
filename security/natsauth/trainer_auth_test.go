package natsauth_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/inference"
	"eyeflow/internal/testenv"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/processors/splitter"
	"eyeflow/processors/trainer"
	"eyeflow/schemas"
	"eyeflow/security/natsauth"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestTrainerRunsUnderItsUser: the trainer trains, evaluates, registers and
// rolls out a version, reading the streams for its live checks, as
// eyeflow-trainer, with no asynchronous permission error.
func TestTrainerRunsUnderItsUser(t *testing.T) {
	if err := inference.InitRuntime(testenv.ORTLibrary(t)); err != nil {
		t.Fatal(err)
	}
	env := startAuthServer(t)
	ctx := testenv.Context(t, 3*time.Minute)
	_, adminJS, _ := env.connect(t, natsauth.RoleAdmin)
	admin := objstore.NewJetStream(adminJS)
	for _, b := range objstore.Buckets() {
		if err := admin.EnsureBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// A small dataset in the splitter's layout, written as the splitter would.
	for ci, class := range []string{"glaucoma", "normal"} {
		for split, n := range map[string]int{schemas.SplitTrain: 6, schemas.SplitHoldout1: 2, schemas.SplitHoldout2: 3, schemas.SplitHoldout3: 2} {
			for i := range n {
				img := image.NewRGBA(image.Rect(0, 0, 224, 224))
				for p := range 224 * 224 {
					img.Set(p%224, p/224, color.RGBA{uint8(60 + 120*ci), uint8((p + i*7) % 97), uint8(40 + 30*ci), 255})
				}
				var b bytes.Buffer
				if err := png.Encode(&b, img); err != nil {
					t.Fatal(err)
				}
				key := splitter.DatasetKey(splitter.DefaultPrefix, split, class, fmt.Sprintf("%062d%02d", i, ci*10+len(split)))
				if _, err := admin.Put(ctx, objstore.BucketProcessed, key, bytes.NewReader(b.Bytes()), int64(b.Len()), objstore.PutOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	_, js, errs := env.connect(t, schemas.StageTrainer)
	store := objstore.NewJetStream(js)
	modelsKV, err := bus.OpenKeyValue(ctx, js, pipeline.KeyValueConfig(bus.KVModels, 1))
	if err != nil {
		t.Fatalf("models bucket as the trainer: %v", err)
	}
	reg, err := models.OpenRegistry(ctx, store, stage.KeyValueOf(modelsKV))
	if err != nil {
		t.Fatalf("registry as the trainer: %v", err)
	}
	kv, err := bus.OpenKeyValue(ctx, js, pipeline.KeyValueConfig(bus.KVTrainer, 1))
	if err != nil {
		t.Fatalf("trainer bucket as the trainer: %v", err)
	}
	feats, err := trainer.NewFeatures(store, inference.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer feats.Close()
	cfg := trainer.DefaultConfig()
	cfg.Gate.CanaryMin = 0
	tr, err := trainer.New(cfg, store, reg, stage.KeyValueOf(kv), stage.PublisherOf(js), stage.StreamReaderOf(js), trainer.NewEmbedded(feats, trainer.EmbeddedConfig{}),
		&trainer.Evaluator{Images: trainer.StoreImages(store)}, trainer.NewMetrics(prometheus.NewRegistry()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	out, err := tr.Run(ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "auth test"})
	if err != nil || out.Event.Kind != schemas.ModelTrained {
		t.Fatalf("train as the trainer: %v, %+v", err, out.Event)
	}
	for range 4 {
		if err := tr.Step(ctx); err != nil {
			t.Fatalf("rollout step as the trainer: %v", err)
		}
	}
	if a, ok, err := reg.Assigned(ctx, schemas.EnvProd); err != nil || !ok || a.Version != out.Event.Version {
		t.Fatalf("prod serves %v (%v, %v), want %s", a, ok, err, out.Event.Version)
	}
	select {
	case err := <-errs:
		t.Errorf("asynchronous error within the trainer's permissions: %v", err)
	default:
	}
}
