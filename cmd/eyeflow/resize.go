package main

import (
	"context"
	"fmt"
	"io"

	"eyeflow/internal/machine"
	"eyeflow/objstore"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

type resizeFlags struct {
	concurrency int
	maxPixels   int64
	maxBytes    int64
	labelPrefix string
	inlineRGB   bool
	// salt and saltVersion go into patient pseudonyms: the splitter's, so
	// `eyeflow up` passes its --split-salt; `eyeflow resize` registers the
	// same flags (registerSalt), read from the same EYEFLOW_SPLIT_SALT and
	// EYEFLOW_SPLIT_SALT_VERSION as `eyeflow splitter`. The pseudonym key
	// is the deployment's, from its record (patientRule).
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
	fs.stringVar(&f.salt, "split-salt", splitter.DefaultConfig().Salt, "the splitter's salt: patient ids (upload metadata patient-id, DICOM PatientID) are published only as a hash salted with it; keep it private and the same for resize and the splitter")
	fs.stringVar(&f.saltVersion, "split-salt-version", def.SplitSaltVersion, "the splitter's salt version, recorded with every patient hash")
}

func (f *resizeFlags) validate() error {
	switch {
	case f.concurrency < 0:
		return fmt.Errorf("--resize-concurrency %d: must be 0 (one per core) or more", f.concurrency)
	case f.maxPixels < 1:
		return fmt.Errorf("--max-pixels %d: must be at least 1", f.maxPixels)
	case f.maxBytes < 1:
		return fmt.Errorf("--max-bytes %d: must be at least 1", f.maxBytes)
	}
	return nil
}

func (f *resizeFlags) processor(ctx context.Context, p *proc, js jetstream.JetStream, store objstore.Store) (stage.Processor[schemas.S3Event], error) {
	patients, err := patientRule(ctx, p, js, f.salt)
	if err != nil {
		return stage.Processor[schemas.S3Event]{}, fmt.Errorf("resize: %w", err)
	}
	cfg := resize.DefaultConfig()
	cfg.Patients = patients
	cfg.Store = store
	cfg.Image.MaxPixels = f.maxPixels
	cfg.MaxBytes = f.maxBytes
	cfg.LabelPrefix = f.labelPrefix
	cfg.InlineRGB = f.inlineRGB
	cfg.SplitSaltVersion = f.saltVersion
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

func runResize(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var rf resizeFlags
	fs := newFlagSet("resize", "", "Runs the resize processor: eye.uploads -> eye.resized, against --nats and --s3.", out, errOut)
	s.register(fs)
	rf.register(fs)
	rf.registerSalt(fs)
	if err := fs.parse(args, s.validate, rf.validate); err != nil {
		return err
	}
	return s.run(ctx, "resize", errOut, stageNeeds(schemas.StageResize, nil), func(e standaloneEnv) ([]task, error) {
		rp, err := rf.processor(ctx, e.p, e.js, e.store)
		if err != nil {
			return nil, err
		}
		return []task{stageTask(e.js, rp)}, nil
	})
}
