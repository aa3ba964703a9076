package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/processors/labelsink"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// labelsinkFlags configure the label sink (`eyeflow labelsink`, `eyeflow up`).
type labelsinkFlags struct {
	lsURL           string
	lsToken         string
	lsTokenFile     string
	lsStorageType   string
	lsStorageID     int
	lowConfidence   float64
	poll            time.Duration
	manifestTimeout time.Duration
}

func (f *labelsinkFlags) register(fs *flagSet) {
	def := labelsink.DefaultConfig()
	fs.stringVar(&f.lsURL, "labelstudio-url", "", "Label Studio URL; when set, its source storage is synced after tasks are written")
	fs.secretVar(&f.lsToken, "labelstudio-token", "Label Studio API token; never logged")
	fs.stringVar(&f.lsTokenFile, "labelstudio-token-file", "", "file holding the Label Studio API token")
	fs.stringVar(&f.lsStorageType, "labelstudio-storage-type", "s3", "type of the Label Studio source storage: s3 (also MinIO), gcs, azure, localfiles")
	fs.intVar(&f.lsStorageID, "labelstudio-storage-id", 0, "id of the Label Studio source storage reading labeling/tasks/")
	fs.float64Var(&f.lowConfidence, "label-low-confidence", 0, "also write a task for every prediction below this confidence (0: only retrain requests; needs the "+bus.ConsumerLabelsinkPredictions+" consumer)")
	fs.durationVar(&f.poll, "label-poll-interval", def.PollInterval, "how often labeling/exports/ is listed for Label Studio annotations")
	fs.durationVar(&f.manifestTimeout, "label-manifest-timeout", def.ManifestTimeout, "write a retrain manifest after this long even if some images are unlabelled")
}

func (f *labelsinkFlags) token() (string, error) {
	if f.lsTokenFile == "" {
		return f.lsToken, nil
	}
	b, err := os.ReadFile(f.lsTokenFile)
	if err != nil {
		return "", fmt.Errorf("--labelstudio-token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (f *labelsinkFlags) config(store objstore.Store) (labelsink.Config, error) {
	cfg := labelsink.DefaultConfig()
	cfg.Store = store
	cfg.LowConfidence = f.lowConfidence
	cfg.PollInterval, cfg.ManifestTimeout = f.poll, f.manifestTimeout
	if f.lsURL != "" {
		tok, err := f.token()
		if err != nil {
			return cfg, err
		}
		cfg.LabelStudio = labelsink.LabelStudio{URL: f.lsURL, Token: tok, StorageType: f.lsStorageType, StorageID: f.lsStorageID}
	}
	return cfg, cfg.Validate()
}

func (f *labelsinkFlags) validate() error {
	// A placeholder store: only the flags are checked here.
	_, err := f.config(objstore.NewJetStream(nil))
	return err
}

// tasks returns the sink's parts: the stage on eye.retrain, the export
// poller, and with --label-low-confidence the stage on eye.predictions.*
// (its consumer is created here when missing, shaped like the topology's others).
func (f *labelsinkFlags) tasks(ctx context.Context, p *proc, js jetstream.JetStream, store objstore.Store, replicas int) ([]task, error) {
	cfg, err := f.config(store)
	if err != nil {
		return nil, err
	}
	kv, err := openKeyValue(ctx, js, labelsink.KVBucket, replicas)
	if err != nil {
		return nil, fmt.Errorf("labelsink: state bucket: %w", err)
	}
	sink, err := labelsink.New(ctx, kv, stage.PublisherOf(js), cfg, p.log)
	if err != nil {
		return nil, err
	}
	out := []task{
		stageTask(js, labelsink.Processor(sink, p.log, p.metrics)),
		{name: "labelsink-exports", run: sink.RunExports},
	}
	if cfg.LowConfidence > 0 {
		opts := bus.DefaultOptions()
		opts.Replicas = replicas
		spec, _ := pipeline.ConsumerSpec(opts, bus.ConsumerLabelsinkPredictions)
		if _, err := bus.EnsureConsumer(ctx, js, spec); err != nil {
			return nil, fmt.Errorf("labelsink: %w", err)
		}
		out = append(out, stageTask(js, labelsink.PredictionProcessor(sink, p.log, p.metrics)))
	}
	return out, nil
}

func runLabelsink(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var lf labelsinkFlags
	fs := newFlagSet("labelsink", "", "Runs the label sink: eye.retrain requests -> Label Studio tasks in labeling/tasks/; Label Studio\n"+
		"exports in labeling/exports/ -> raw/<class>/<image-id>.<ext> and retrain manifests.", out, errOut)
	s.register(fs)
	lf.register(fs)
	if err := fs.parse(args, s.validate, lf.validate); err != nil {
		return err
	}
	return s.run(ctx, "labelsink", errOut, stageNeeds(schemas.StageLabelsink, nil), func(e standaloneEnv) ([]task, error) {
		return lf.tasks(ctx, e.p, e.js, e.store, s.replicas)
	})
}
