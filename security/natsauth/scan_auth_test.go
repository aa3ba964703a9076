package natsauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// TestScansReadUnderTheirUser: a stage that declares a scan reads the
// whole stream with it under its own user (ordered consumers, recreated
// under a new name on every fetch), and still may not drain, reconfigure
// or delete another stage's durable consumer on that stream.
func TestScansReadUnderTheirUser(t *testing.T) {
	env := startAuthServer(t)
	ctx := testenv.Context(t, time.Minute)
	_, adminJS, _ := env.connect(t, "admin")
	const n = 600 // more than one fetch of 256
	for i := range n {
		data, _ := json.Marshal(schemas.Prediction{Schema: schemas.SchemaPrediction, ImageID: "img", Env: schemas.EnvProd})
		if _, err := adminJS.Publish(ctx, schemas.PredictionSubject(schemas.EnvProd), data, jetstream.WithMsgID(fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
	}
	_, js, errs := env.connect(t, schemas.StageTrainer)
	got := 0
	err := stage.StreamReaderOf(js).Scan(ctx, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd), time.Time{}, func(stage.StoredMsg) bool {
		got++
		return true
	})
	if err != nil || got != n {
		t.Fatalf("trainer scanned %d of %d predictions: %v", got, n, err)
	}
	select {
	case err := <-errs:
		t.Fatalf("asynchronous error while scanning as the trainer: %v", err)
	default:
	}

	// driftwatch's durable consumer is out of the trainer's reach.
	cons, err := js.Consumer(ctx, bus.StreamPredictions, bus.ConsumerDriftwatch)
	if err != nil {
		t.Fatalf("consumer info as the trainer: %v", err) // info is a read
	}
	if b, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second)); err == nil {
		for m := range b.Messages() {
			t.Errorf("the trainer pulled %s from driftwatch's consumer", m.Subject())
		}
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "Permissions Violation") {
				t.Errorf("pull from driftwatch's consumer: %v, want a permissions violation", err)
			}
		case <-time.After(3 * time.Second):
			t.Error("the trainer pulled from driftwatch's consumer without a permission error")
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(dctx, bus.StreamPredictions, bus.ConsumerDriftwatch); err == nil {
		t.Error("the trainer deleted driftwatch's consumer")
	}
	if _, err := adminJS.Consumer(ctx, bus.StreamPredictions, bus.ConsumerDriftwatch); err != nil {
		t.Errorf("driftwatch's consumer after the trainer's attempts: %v", err)
	}
}
