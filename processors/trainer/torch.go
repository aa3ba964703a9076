package trainer

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/schemas"

	"github.com/rs/zerolog"
)

// torchScript is the training program. It ships inside the binary, which is
// copied to GPU hosts alone, and is written into each job's WorkDir.
//
//go:embed torch/train.py
var torchScript []byte

// Defaults of TorchConfig.
const (
	DefaultTorchArch      = "densenet121"
	DefaultTorchEpochs    = 10
	DefaultTorchBatchSize = 32
	DefaultTorchLR        = 1e-3
	DefaultTorchTimeout   = 2 * time.Hour
)

// TorchParityTolerance is the largest difference allowed between the
// probabilities eyeflow's ONNX Runtime computes from model.onnx and those of
// the trained PyTorch model on the same images: beyond it the export is
// wrong and the run is refused.
const TorchParityTolerance = 1e-3

// TorchConfig configures the PyTorch engine. Zero values take the defaults.
type TorchConfig struct {
	// Python is the interpreter. Empty:
	// /usr/bin/python3 (Debian's python3-torch lives there, while python3
	// on PATH may be a pyenv or venv without it), then python3 on PATH; the
	// first that imports torch and torchvision is used.
	Python string
	// Arch is the torchvision architecture (densenet121, resnet18, ...) or
	// smallcnn, a tiny network for tests.
	Arch      string
	Epochs    int
	BatchSize int
	// LR is AdamW's peak learning rate (warm-up, then cosine decay).
	LR float64
	// NProc > 1 trains with DistributedDataParallel in NProc processes
	// under torchrun (NCCL on GPUs, gloo on the CPU).
	NProc int
	// InitWeights is a torchvision state dict to start from (ImageNet
	// weights the user already has). Nothing is ever downloaded: without it
	// training starts from random weights.
	InitWeights string
	// Timeout bounds one run; a child still running then is killed with its
	// whole process group and the run refused.
	Timeout time.Duration
	// Device is auto (CUDA when PyTorch sees a GPU, else the CPU), cpu,
	// cuda or cuda:N.
	Device string
	// Workers is the data-loader processes per training process: 0 picks
	// (8 per GPU process, none on the CPU, where the cores compute), -1
	// forces none.
	Workers int
}

// withDefaults fills the zero values.
func (c TorchConfig) withDefaults() TorchConfig {
	if c.Arch == "" {
		c.Arch = DefaultTorchArch
	}
	if c.Epochs == 0 {
		c.Epochs = DefaultTorchEpochs
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultTorchBatchSize
	}
	if c.LR == 0 {
		c.LR = DefaultTorchLR
	}
	if c.NProc == 0 {
		c.NProc = 1
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTorchTimeout
	}
	if c.Device == "" {
		c.Device = "auto"
	}
	return c
}

func (c TorchConfig) validate() error {
	var errs []error
	if c.Epochs < 1 {
		errs = append(errs, fmt.Errorf("epochs %d: want at least 1", c.Epochs))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size %d: want at least 1", c.BatchSize))
	}
	if !(c.LR > 0) || math.IsInf(c.LR, 0) {
		errs = append(errs, fmt.Errorf("learning rate %v: want a positive number", c.LR))
	}
	if c.NProc < 1 {
		errs = append(errs, fmt.Errorf("nproc %d: want at least 1", c.NProc))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s: want a positive duration", c.Timeout))
	}
	if c.Workers < -1 {
		errs = append(errs, fmt.Errorf("workers %d: want -1 (none), 0 (auto) or a count", c.Workers))
	}
	dev := strings.ToLower(c.Device)
	if kind, n, ok := strings.Cut(dev, ":"); kind != "auto" && kind != "cpu" && kind != "cuda" || ok && (kind != "cuda" || !torchIsUint(n)) {
		errs = append(errs, fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", c.Device))
	}
	return errors.Join(errs...)
}

func torchIsUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 31)
	return err == nil
}

// TorchEnv is the Python environment the engine found.
type TorchEnv struct {
	Python        string   `json:"python"`
	Executable    string   `json:"executable"`
	Torch         string   `json:"torch"`
	Torchvision   string   `json:"torchvision"`
	CUDA          *string  `json:"cuda"`
	CUDAAvailable bool     `json:"cuda_available"`
	GPUs          int      `json:"gpus"`
	GPUNames      []string `json:"gpu_names,omitempty"`
	Distributed   bool     `json:"distributed"`
	Cores         int      `json:"cores"`
}

// TorchEngine trains by full fine-tuning in PyTorch, in a child process per
// job (processors/trainer/torch/train.py). It implements Engine.
type TorchEngine struct {
	cfg TorchConfig
	// python is the interpreter that imported torch when the engine was made.
	python string
	env    TorchEnv
	// initDigest is the SHA-256 of InitWeights: the file's content, not its
	// name, shapes the model.
	initDigest string
}

// NewTorchEngine checks the settings and finds a Python that imports torch
// and torchvision and accepts them (architecture, device, init weights), so
// that a missing PyTorch fails at start-up with a clear message rather than
// in every training request.
func NewTorchEngine(cfg TorchConfig) (*TorchEngine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("torch engine: %w", err)
	}
	e := &TorchEngine{cfg: cfg}
	if cfg.InitWeights != "" {
		abs, err := filepath.Abs(cfg.InitWeights)
		if err != nil {
			return nil, fmt.Errorf("torch engine: init weights %s: %w", cfg.InitWeights, err)
		}
		e.cfg.InitWeights = abs
		if e.initDigest, err = torchFileSHA256(abs); err != nil {
			return nil, fmt.Errorf("torch engine: init weights: %w", err)
		}
	}
	var tried []string
	for _, py := range torchPythons(cfg.Python) {
		env, err := e.probe(py)
		if err == nil {
			e.python, e.env = py, env
			return e, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v", py, err))
	}
	return nil, fmt.Errorf("torch engine: no usable Python with PyTorch and torchvision (install Debian's python3-torch and python3-torchvision, scripts/setup.sh, or name one with --torch-python):\n  %s",
		strings.Join(tried, "\n  "))
}

// torchPythons are the interpreters to try, in order.
func torchPythons(configured string) []string {
	if configured != "" {
		return []string{configured}
	}
	return []string{"/usr/bin/python3", "python3"}
}

// torchProbeTimeout bounds the check of an interpreter: importing torch and
// initialising CUDA can take a while on a cold host.
const torchProbeTimeout = 3 * time.Minute

// probe runs the training program with --probe (the program on stdin),
// which imports torch, checks the settings and prints the environment.
func (e *TorchEngine) probe(python string) (TorchEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), torchProbeTimeout)
	defer cancel()
	args := []string{"-", "--probe", "--arch", e.cfg.Arch, "--device", e.cfg.Device, "--nproc", strconv.Itoa(e.cfg.NProc)}
	if e.cfg.InitWeights != "" {
		args = append(args, "--init-weights", e.cfg.InitWeights)
	}
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Stdin = bytes.NewReader(torchScript)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return TorchEnv{}, fmt.Errorf("no answer within %s", torchProbeTimeout)
		}
		return TorchEnv{}, fmt.Errorf("%v: %s", err, torchLastLines(stderr.Bytes(), 3))
	}
	var env TorchEnv
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &env); err != nil {
		return TorchEnv{}, fmt.Errorf("probe answered %q: %w", stdout.String(), err)
	}
	return env, nil
}

// Env is the Python environment in use.
func (e *TorchEngine) Env() TorchEnv { return e.env }

// Python is the interpreter in use.
func (e *TorchEngine) Python() string { return e.python }

// Name is EngineTorch.
func (e *TorchEngine) Name() string { return EngineTorch }

// Settings are the hyperparameters that shape the model. The device, the
// process count and the loader workers change speed, not the model, and are
// left out (they are in the card).
func (e *TorchEngine) Settings() map[string]any {
	s := map[string]any{
		"arch":       e.cfg.Arch,
		"epochs":     e.cfg.Epochs,
		"batch_size": e.cfg.BatchSize,
		"lr":         e.cfg.LR,
	}
	if e.initDigest != "" {
		s["init_weights_sha256"] = e.initDigest
	}
	return s
}

// torchExample is one image of the job sent to train.py.
type torchExample struct {
	ImageID string `json:"image_id"`
	Class   string `json:"class"`
	Bucket  string `json:"bucket"`
	Key     string `json:"key"`
	// File is the materialised PNG, relative to torchJob.DataDir.
	File string `json:"file"`
}

// torchJob is train.py's stdin.
type torchJob struct {
	Name        string         `json:"name"`
	Version     string         `json:"version"`
	Classes     []string       `json:"classes"`
	DataDir     string         `json:"data_dir"`
	Train       []torchExample `json:"train"`
	Select      []torchExample `json:"select"`
	Out         string         `json:"out"`
	Arch        string         `json:"arch"`
	Epochs      int            `json:"epochs"`
	BatchSize   int            `json:"batch_size"`
	LR          float64        `json:"lr"`
	Seed        uint64         `json:"seed"`
	InitWeights string         `json:"init_weights"`
	Device      string         `json:"device"`
	Workers     int            `json:"workers"`
	NProc       int            `json:"nproc"`
}

// Train materialises the images under WorkDir, runs train.py, checks the
// model it wrote in ONNX Runtime and returns it. Crashes, hangs past
// Timeout, non-finite losses, one-class data and exports that do not load
// or disagree with PyTorch are errors wrapping ErrRefused; a cancelled ctx
// and unreadable images (the object store is down) are not, so the request
// is tried again. job.Progress is called once per epoch, from a goroutine
// that reads the child's output, never concurrently with itself.
func (e *TorchEngine) Train(ctx context.Context, job Job) (Result, error) {
	start := time.Now()
	log := job.Log.With().Str("engine", EngineTorch).Str("model", job.Name+" "+job.Version).Logger()
	if job.WorkDir == "" {
		return Result{}, errors.New("torch engine: job has no WorkDir")
	}
	if job.Images == nil {
		return Result{}, errors.New("torch engine: job has no image source")
	}
	if err := torchCheckClasses(job.Classes); err != nil {
		return Result{}, fmt.Errorf("torch engine: %w: %w", ErrRefused, err)
	}
	dataDir := filepath.Join(job.WorkDir, "data")
	outDir := filepath.Join(job.WorkDir, "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("torch engine: %w", err)
	}
	mat, err := torchMaterialise(ctx, job, dataDir)
	if err != nil {
		return Result{}, err
	}
	if n := len(mat.trainClasses); n < 2 {
		return Result{}, fmt.Errorf("%w: the train split has usable images of %d class(es) %v: a classifier needs at least 2", ErrRefused, n, mat.trainClasses)
	}
	log.Info().Int("train", len(mat.train)).Int("select", len(mat.sel)).Any("skipped", mat.skipped).
		Str("python", e.python).Str("torch", e.env.Torch).Str("arch", e.cfg.Arch).Int("nproc", e.cfg.NProc).
		Msg("torch training: images ready")

	script := filepath.Join(job.WorkDir, "train.py")
	if err := os.WriteFile(script, torchScript, 0o644); err != nil {
		return Result{}, fmt.Errorf("torch engine: write %s: %w", script, err)
	}
	workers := e.cfg.Workers
	switch workers {
	case 0:
		workers = -1 // train.py's "pick"
	case -1:
		workers = 0
	}
	stdin, err := json.Marshal(torchJob{
		Name: job.Name, Version: job.Version, Classes: job.Classes,
		DataDir: dataDir, Train: mat.train, Select: mat.sel, Out: outDir,
		Arch: e.cfg.Arch, Epochs: e.cfg.Epochs, BatchSize: e.cfg.BatchSize, LR: e.cfg.LR,
		Seed: job.Seed, InitWeights: e.cfg.InitWeights, Device: e.cfg.Device, Workers: workers, NProc: e.cfg.NProc,
	})
	if err != nil {
		return Result{}, fmt.Errorf("torch engine: job JSON: %w", err)
	}
	run, err := e.run(ctx, log, job, script, stdin)
	if err != nil {
		return Result{}, err
	}

	files, err := models.ReadModelDir(outDir)
	if err != nil {
		return Result{}, fmt.Errorf("%w: the training process exited cleanly but left no model: %w", ErrRefused, err)
	}
	card, err := models.ParseCard(files.Card)
	if err != nil {
		return Result{}, fmt.Errorf("%w: the training process wrote a bad model card: %w", ErrRefused, err)
	}
	card.Name, card.Version = job.Name, job.Version
	t := card.Training
	if t == nil {
		t = &models.Training{}
		card.Training = t
	}
	t.Engine = EngineTorch
	t.DatasetDigest = torchDatasetDigest(mat.train, mat.sel)
	t.TrainImages, t.SelectImages = len(mat.train), len(mat.sel)
	if len(mat.skipped) > 0 {
		t.Skipped = mat.skipped
	}
	t.Settings = e.Settings()
	t.Settings["seed"] = job.Seed
	if t.Extra == nil {
		t.Extra = map[string]any{}
	}
	t.Extra["python"] = e.python
	t.Extra["script_sha256"] = torchSHA256(torchScript)
	t.Extra["nproc"] = e.cfg.NProc
	if e.cfg.InitWeights != "" {
		t.Extra["init_weights_path"] = e.cfg.InitWeights
	}

	if err := inference.InitRuntime(""); err != nil {
		return Result{}, fmt.Errorf("torch engine: check the model: %w", err)
	}
	model, err := inference.LoadModel(files, inference.SessionOptions{ParallelRuns: 1})
	if err != nil {
		return Result{}, fmt.Errorf("%w: the exported model.onnx does not load in ONNX Runtime: %w", ErrRefused, err)
	}
	parity, err := checkTorchParity(model, outDir, dataDir)
	model.Close()
	if err != nil {
		return Result{}, err
	}
	t.Extra["onnx_parity_images"] = parity.images
	t.Extra["onnx_parity_max_abs_diff"] = parity.maxDiff
	t.Extra["wall_seconds"] = time.Since(start).Seconds()
	if files.Card, err = json.MarshalIndent(card, "", "  "); err != nil {
		return Result{}, fmt.Errorf("torch engine: model card: %w", err)
	}
	res := Result{Files: files, Seconds: time.Since(start)}
	log.Info().Str("device", t.Device).Int("best_epoch", run.bestEpoch).Float64("train_seconds", t.Seconds).
		Float64("images_per_sec", t.ImagesPerSec).Float64("parity_max_abs_diff", parity.maxDiff).
		Dur("wall", res.Seconds).Msg("torch training: model ready")
	return res, nil
}

func torchCheckClasses(classes []string) error {
	if len(classes) == 0 {
		return errors.New("no classes")
	}
	if !sort.StringsAreSorted(classes) {
		return errors.New("classes are not in labels.json (sorted) order")
	}
	for i := 1; i < len(classes); i++ {
		if classes[i] == classes[i-1] {
			return fmt.Errorf("class %q appears twice", classes[i])
		}
	}
	return nil
}

// torchImages are the job's images on disk.
type torchImages struct {
	train, sel []torchExample
	// skipped counts images that could not be used, by reason.
	skipped      map[string]int
	trainClasses []string
}

// torchReadWorkers bounds the object-store reads in flight.
const torchReadWorkers = 8

// torchMaterialise writes every example's PNG to
// <dataDir>/<train|holdout_1>/<class>/<image-id>.png. An image that is gone
// or is not a decodable PNG is skipped and counted; any other read error
// fails the run (the store is unavailable: try again later).
func torchMaterialise(ctx context.Context, job Job, dataDir string) (torchImages, error) {
	known := make(map[string]bool, len(job.Classes))
	for _, c := range job.Classes {
		known[c] = true
	}
	type item struct {
		ex    Example
		split string
		file  string
		skip  string
	}
	items := make([]item, 0, len(job.Train)+len(job.Select))
	for _, ex := range job.Train {
		items = append(items, item{ex: ex, split: schemas.SplitTrain})
	}
	for _, ex := range job.Select {
		items = append(items, item{ex: ex, split: SelectHoldout})
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// firstErr is the error that stopped the others: theirs only say
	// they were stopped.
	var (
		errMu    sync.Mutex
		firstErr error
	)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(torchReadWorkers, max(1, len(items))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				it := &items[i]
				var err error
				it.file, it.skip, err = torchMaterialiseOne(ctx, job.Images, it.ex, it.split, dataDir, known)
				if err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					cancel()
				}
			}
		}()
	}
feed:
	for i := range items {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := parent.Err(); err != nil {
		return torchImages{}, fmt.Errorf("torch engine: materialise images: %w", err)
	}
	if firstErr != nil {
		return torchImages{}, firstErr
	}
	m := torchImages{skipped: map[string]int{}}
	classes := map[string]bool{}
	for _, it := range items {
		if it.skip != "" {
			m.skipped[it.skip]++
			job.Log.Warn().Str("image_id", it.ex.ImageID).Str("bucket", it.ex.Bucket).Str("key", it.ex.Key).Str("reason", it.skip).Msg("torch training: image skipped")
			continue
		}
		te := torchExample{ImageID: it.ex.ImageID, Class: it.ex.Class, Bucket: it.ex.Bucket, Key: it.ex.Key, File: it.file}
		if it.split == schemas.SplitTrain {
			m.train = append(m.train, te)
			classes[te.Class] = true
		} else {
			m.sel = append(m.sel, te)
		}
	}
	for c := range classes {
		m.trainClasses = append(m.trainClasses, c)
	}
	sort.Strings(m.trainClasses)
	return m, nil
}

// torchMaterialiseOne reads and writes one image; it returns the file relative
// to dataDir, or the reason to skip it, or an error that fails the run.
func torchMaterialiseOne(ctx context.Context, src ImageSource, ex Example, split, dataDir string, known map[string]bool) (file, skip string, err error) {
	if !known[ex.Class] {
		return "", "unknown_class", nil
	}
	data, err := src.PNG(ctx, ex)
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return "", "missing", nil
		}
		if ctx.Err() != nil {
			return "", "", fmt.Errorf("torch engine: read image %s: %w", ex.ImageID, ctx.Err())
		}
		return "", "", fmt.Errorf("torch engine: read image %s (%s/%s): %w", ex.ImageID, ex.Bucket, ex.Key, err)
	}
	// A full decode: a PNG that Python's PIL cannot read would crash the
	// whole run, so it is skipped here.
	if res, err := imaging.Decode(data, imaging.DefaultOptions()); err != nil || res.Format != imaging.FormatPNG {
		return "", "not_a_png", nil
	}
	file = filepath.Join(split, torchPathElem(ex.Class), torchPathElem(ex.ImageID)+".png")
	path := filepath.Join(dataDir, file)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", "", fmt.Errorf("torch engine: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", "", fmt.Errorf("torch engine: %w", err)
	}
	return file, "", nil
}

// torchPathElem is s when it is a plain, portable file name, else a digest of
// it: names come from events and must not climb out of the data folder.
func torchPathElem(s string) string {
	ok := s != "" && s != "." && s != ".." && len(s) <= 128
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return "h" + torchSHA256([]byte(s))[:24]
}

// torchDatasetDigest identifies the images trained and selected on: a
// SHA-256 over the sorted (split, image id, class) lines.
func torchDatasetDigest(train, sel []torchExample) string {
	var lines []string
	for _, ex := range train {
		lines = append(lines, schemas.SplitTrain+"\t"+ex.ImageID+"\t"+ex.Class)
	}
	for _, ex := range sel {
		lines = append(lines, SelectHoldout+"\t"+ex.ImageID+"\t"+ex.Class)
	}
	sort.Strings(lines)
	return torchSHA256([]byte(strings.Join(lines, "\n")))
}

// torchEvent is one line of train.py's stdout.
type torchEvent struct {
	Event string `json:"event"`
	Progress
	Reason    string  `json:"reason"`
	Device    string  `json:"device"`
	Torch     string  `json:"torch"`
	CUDA      *string `json:"cuda"`
	Processes int     `json:"processes"`
	Seconds   float64 `json:"seconds"`
	BestEpoch int     `json:"best_epoch"`
}

// torchRun is what a run of train.py reported.
type torchRun struct {
	device    string
	epochs    []Progress
	refusal   string
	bad       string
	done      bool
	bestEpoch int
}

// run starts train.py, feeds it the job, follows its progress and maps how
// it ended to an error.
func (e *TorchEngine) run(ctx context.Context, log zerolog.Logger, job Job, script string, stdin []byte) (torchRun, error) {
	runCtx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	args := []string{script}
	if e.cfg.NProc > 1 {
		args = append(args, "--nproc", strconv.Itoa(e.cfg.NProc))
	}
	cmd := exec.CommandContext(runCtx, e.python, args...)
	cmd.Dir = job.WorkDir
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stdin = bytes.NewReader(stdin)
	// The child and everything it starts (torchrun's workers, data-loader
	// processes) share a process group, killed as one on timeout or cancel.
	torchProcessGroup(cmd)
	cmd.WaitDelay = 10 * time.Second

	var r torchRun
	stdout := &torchLineWriter{fn: func(line []byte) {
		var ev torchEvent
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			log.Debug().Str("stdout", string(line)).Msg("torch training")
			return
		}
		switch ev.Event {
		case "start":
			r.device = ev.Device
			log.Info().Str("device", ev.Device).Str("torch", ev.Torch).Int("processes", ev.Processes).Msg("torch training: started")
		case "epoch":
			p := ev.Progress
			r.epochs = append(r.epochs, p)
			log.Info().Int("epoch", p.Epoch).Int("epochs", p.Epochs).Float64("loss", p.Loss).
				Float64("select_accuracy", p.SelectAccuracy).Float64("select_macro_f1", p.SelectMacroF1).
				Float64("images_per_sec", p.ImagesPerSec).Msg("torch training: epoch")
			if job.Progress != nil {
				job.Progress(p)
			}
		case "refused":
			r.refusal = ev.Reason
		case "error":
			r.bad = ev.Reason
		case "done":
			r.done, r.bestEpoch = true, ev.BestEpoch
		}
	}}
	stderr := &torchTailWriter{max: 16 << 10, log: log}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	started := time.Now()
	// Pdeathsig fires when the thread that started the child exits, not
	// the process: keep this goroutine on its thread until the child ends.
	runtime.LockOSThread()
	err := cmd.Run()
	runtime.UnlockOSThread()
	stdout.flush()
	stderr.flush()
	tail := torchLastLines(stderr.tail(), 12)
	progress := ""
	if n := len(r.epochs); n > 0 {
		progress = fmt.Sprintf(" after epoch %d of %d", r.epochs[n-1].Epoch, r.epochs[n-1].Epochs)
	}
	switch {
	case ctx.Err() != nil:
		// Shutdown or a cancelled request: not the job's fault.
		return r, fmt.Errorf("torch engine: training %s %s stopped%s: %w", job.Name, job.Version, progress, ctx.Err())
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return r, fmt.Errorf("%w: timeout: the training process ran past %s (the train timeout)%s and was killed; stderr: %s",
			ErrRefused, e.cfg.Timeout, progress, tail)
	case r.refusal != "":
		return r, fmt.Errorf("%w: %s", ErrRefused, r.refusal)
	case r.bad != "":
		return r, fmt.Errorf("%w: the training program rejected the job: %s", ErrRefused, r.bad)
	case err != nil:
		return r, fmt.Errorf("%w: the training process crashed (%v)%s after %s; stderr: %s",
			ErrRefused, err, progress, time.Since(started).Round(time.Millisecond), tail)
	case !r.done:
		return r, fmt.Errorf("%w: the training process exited without finishing%s; stderr: %s", ErrRefused, progress, tail)
	}
	return r, nil
}

// torchLineWriter calls fn for each complete line written to it. exec.Cmd
// copies a pipe into it from one goroutine, so fn needs no locking, and
// everything fn stored is visible once Wait returns.
type torchLineWriter struct {
	fn  func([]byte)
	buf []byte
}

// torchMaxLine bounds a line kept whole; longer ones are cut.
const torchMaxLine = 1 << 20

func (w *torchLineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(bytes.TrimRight(w.buf[:i], "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > torchMaxLine {
		w.fn(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

func (w *torchLineWriter) flush() {
	if len(w.buf) > 0 {
		w.fn(w.buf)
		w.buf = nil
	}
}

// torchTailWriter logs the child's stderr line by line (debug level) and keeps
// its last max bytes for the reason of a failed run.
type torchTailWriter struct {
	max  int
	log  zerolog.Logger
	last []byte
	line torchLineWriter
}

func (w *torchTailWriter) Write(p []byte) (int, error) {
	w.last = append(w.last, p...)
	if len(w.last) > 2*w.max {
		w.last = append([]byte(nil), w.last[len(w.last)-w.max:]...)
	}
	if w.line.fn == nil {
		w.line.fn = func(l []byte) { w.log.Debug().Str("stderr", string(l)).Msg("torch training") }
	}
	return w.line.Write(p)
}

func (w *torchTailWriter) flush() {
	if w.line.fn != nil {
		w.line.flush()
	}
}

func (w *torchTailWriter) tail() []byte {
	if len(w.last) > w.max {
		return w.last[len(w.last)-w.max:]
	}
	return w.last
}

// torchLastLines is the last n non-empty lines of b, joined by " | ": the end
// of a Python traceback says what went wrong.
func torchLastLines(b []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(empty)"
	}
	return strings.Join(lines, " | ")
}

// torchParity is the result of comparing model.onnx with PyTorch.
type torchParity struct {
	images  int
	maxDiff float64
}

// checkTorchParity runs the images of parity.json through the loaded model
// (eyeflow's own decode, normalisation and ONNX Runtime) and compares the
// probabilities with the softmax of the logits PyTorch computed for them.
func checkTorchParity(model *inference.Model, outDir, dataDir string) (torchParity, error) {
	raw, err := os.ReadFile(filepath.Join(outDir, "parity.json"))
	if err != nil {
		return torchParity{}, fmt.Errorf("%w: the training process wrote no parity.json: %w", ErrRefused, err)
	}
	var p struct {
		Files  []string    `json:"files"`
		Logits [][]float32 `json:"logits"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || len(p.Files) == 0 || len(p.Files) != len(p.Logits) {
		return torchParity{}, fmt.Errorf("%w: parity.json: want files and as many logit rows (%v)", ErrRefused, err)
	}
	images := make([][]byte, len(p.Files))
	for i, f := range p.Files {
		if !filepath.IsLocal(f) {
			return torchParity{}, fmt.Errorf("%w: parity.json names %q, outside the data folder", ErrRefused, f)
		}
		data, err := os.ReadFile(filepath.Join(dataDir, f))
		if err != nil {
			return torchParity{}, fmt.Errorf("torch engine: parity image: %w", err)
		}
		res, err := imaging.Decode(data, imaging.DefaultOptions())
		if err != nil {
			return torchParity{}, fmt.Errorf("torch engine: parity image %s: %w", f, err)
		}
		images[i] = res.RGB
	}
	probs, err := model.Run(images)
	if err != nil {
		return torchParity{}, fmt.Errorf("%w: the exported model.onnx fails to run: %w", ErrRefused, err)
	}
	var worst float64
	for i, row := range probs {
		want := inference.Softmax(p.Logits[i])
		if len(want) != len(row) {
			return torchParity{}, fmt.Errorf("%w: parity.json has %d logits for %s, the model %d", ErrRefused, len(want), p.Files[i], len(row))
		}
		for k := range row {
			d := math.Abs(row[k] - want[k])
			if !(d <= TorchParityTolerance) {
				return torchParity{}, fmt.Errorf("%w: the exported model.onnx disagrees with the trained PyTorch model on %s, class %d: probability %.6f in ONNX Runtime, %.6f in PyTorch (tolerance %g)",
					ErrRefused, p.Files[i], k, row[k], want[k], TorchParityTolerance)
			}
			worst = max(worst, d)
		}
	}
	return torchParity{images: len(images), maxDiff: worst}, nil
}

func torchFileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func torchSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
