package main

import (
	"context"
	"fmt"
	"io"

	"eyeflow/internal/machine"
	"eyeflow/objstore"
	"eyeflow/processors/resize"
	"eyeflow/schemas"
	"eyeflow/stage"
	"eyeflow/telemetry"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

type resizeFlags struct {
	concurrency int
	maxPixels   int64
	maxBytes    int64
	labelPrefix string
	inlineRGB   bool
	// salt and saltVersion hash patient ids: the splitter's, so `eyeflow
	// up` passes its --split-salt; `eyeflow resize` registers the same
	// flags (registerSalt), read from the same EYEFLOW_SPLIT_SALT and
	// EYEFLOW_SPLIT_SALT_VERSION as `eyeflow splitter`.
	salt, saltVersion string
}

func (f *resizeFlags) register(fs *flagSet) {
	def := resize.DefaultConfig()
	fs.intVar(&f.concurrency, "resize-concurrency", 0, "images the resize stage decodes at once (0: one per core, fewer when memory is short)")
	fs.int64Var(&f.maxPixels, "max-pixels", def.Image.MaxPixels, "refuse images with more pixels than this (decompression bombs), checked from the header")
	fs.int64Var(&f.maxBytes, "max-bytes", def.MaxBytes, "refuse uploaded objects larger than this many bytes")
	fs.stringVar(&f.labelPrefix, "label-prefix", "", "key prefix under which <class>/<file> keys carry a label (empty: any folder)")
	fs.boolVar(&f.inlineRGB, "inline-rgb", def.InlineRGB, "also carry the 224x224 pixels in eye.resized and eye.split (base64, about 200 KB per event; by default events name the processed PNG)")
}

// registerSalt adds --split-salt and --split-salt-version for a process that
// runs resize without the splitter's flags.
func (f *resizeFlags) registerSalt(fs *flagSet) {
	def := resize.DefaultConfig()
	fs.stringVar(&f.salt, "split-salt", def.SplitSalt, "the splitter's salt: patient ids (upload metadata patient-id, DICOM PatientID) are published only as a hash salted with it; keep it private and the same for resize and the splitter")
	fs.stringVar(&f.saltVersion, "split-salt-version", def.SplitSaltVersion, "the splitter's salt version, recorded with every patient hash")
}

func (f *resizeFlags) validate() error {
	if f.concurrency < 0 {
		return fmt.Errorf("--resize-concurrency %d: must be 0 (one per core) or more", f.concurrency)
	}
	return nil
}

func (f *resizeFlags) processor(p *proc, store objstore.Store) (stage.Processor[schemas.S3Event], error) {
	cfg := resize.DefaultConfig()
	cfg.Store = store
	cfg.Image.MaxPixels = f.maxPixels
	cfg.MaxBytes = f.maxBytes
	cfg.LabelPrefix = f.labelPrefix
	cfg.InlineRGB = f.inlineRGB
	cfg.SplitSalt, cfg.SplitSaltVersion = f.salt, f.saltVersion
	r, err := resize.New(cfg)
	if err != nil {
		return stage.Processor[schemas.S3Event]{}, err
	}
	return resize.Processor(r, f.resolvedConcurrency(), p.log, p.metrics), nil
}

// resolvedConcurrency is --resize-concurrency, or the machine's default.
func (f *resizeFlags) resolvedConcurrency() int {
	if f.concurrency > 0 {
		return f.concurrency
	}
	return machine.Detect().ResizeConcurrency()
}

// standalone holds what `eyeflow <processor>` needs: NATS, a store, HTTP.
type standalone struct {
	log   logFlags
	nats  natsFlags
	store storeFlags
	http  string
	// replicas of a bucket or consumer this process has to create because
	// the topology lacks it; existing ones are used as they are.
	replicas int
}

func (s *standalone) register(fs *flagSet) {
	s.log.register(fs)
	s.nats.register(fs, defaultNATS, "NATS server URL(s), comma-separated")
	s.store.register(fs)
	fs.stringVar(&s.http, "http", "127.0.0.1:8080", "address for /metrics, /healthz and /readyz")
	fs.intVar(&s.replicas, "replicas", 1, "replicas of a KV or object-store bucket this process must create because `eyeflow topology apply` / `buckets init` did not (existing ones are never changed)")
}

func (s *standalone) validate() error {
	if s.replicas < 1 || s.replicas > 5 {
		return fmt.Errorf("--replicas %d: must be 1..5", s.replicas)
	}
	if err := s.nats.validate(); err != nil {
		return err
	}
	return s.store.validate()
}

// standaloneEnv is what a standalone processor's tasks are built from.
type standaloneEnv struct {
	p     *proc
	nc    *nats.Conn
	js    natsjs.JetStream
	store objstore.Store
	srv   *telemetry.Server // handlers may be added before it serves
}

// run connects, builds the process's tasks and serves HTTP until ctx ends.
func (s *standalone) run(ctx context.Context, name string, errOut io.Writer, build func(e standaloneEnv) ([]task, error)) error {
	log, err := s.log.logger(errOut)
	if err != nil {
		return err
	}
	p := newProc(log.With().Str("process", name).Logger())
	nc, js, err := s.nats.dial(s.nats.url, "eyeflow-"+name, p.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := s.store.open(js, s.replicas)
	if err != nil {
		return err
	}
	srv, err := listenHTTP(s.http, p, nc)
	if err != nil {
		return err
	}
	tasks, err := build(standaloneEnv{p: p, nc: nc, js: js, store: store, srv: srv})
	if err != nil {
		return err
	}
	p.log.Info().Str("http", srv.Addr()).Str("nats", redactURL(s.nats.url)).Msg(name + " running")
	return runTasks(ctx, p.log, append(tasks, httpTask(srv))...)
}

func runResize(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var rf resizeFlags
	fs := newFlagSet("resize", "", "Runs the resize processor: eye.uploads -> eye.resized, against --nats and --s3.", errOut)
	s.register(fs)
	rf.register(fs)
	rf.registerSalt(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return err
	}
	if err := rf.validate(); err != nil {
		return err
	}
	return s.run(ctx, "resize", errOut, func(e standaloneEnv) ([]task, error) {
		rp, err := rf.processor(e.p, e.store)
		if err != nil {
			return nil, err
		}
		return []task{stageTask(e.js, rp)}, nil
	})
}
