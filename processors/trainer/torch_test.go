package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/internal/testenv"
	"eyeflow/models"
	"eyeflow/objstore"

	"github.com/rs/zerolog"
	ort "github.com/yalue/onnxruntime_go"
)

// These tests run the real train.py under Debian's PyTorch and load its models in eyeflow's ONNX Runtime. A machine
// without PyTorch fails them: scripts/setup.sh installs it.

// torchClasses are the test set's classes: coloured discs on a noisy grey
// background, the class being the discs' dominant channel.
var torchClasses = []string{"blue_discs", "green_discs", "red_discs"}

// torchTestImage draws image i of class c: 224x224 packed RGB.
func torchTestImage(c, i int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, uint64(c*100000+i)))
	rgb := make([]byte, inference.ImageBytes)
	var bg [3]int
	for k := range bg {
		bg[k] = 60 + rng.IntN(60)
	}
	for p := 0; p < len(rgb); p += 3 {
		for k := range 3 {
			rgb[p+k] = byte(bg[k] + rng.IntN(21) - 10)
		}
	}
	// torchClasses is sorted: blue (channel 2), green (1), red (0).
	channel := [3]int{2, 1, 0}[c]
	for range 5 {
		cx, cy, r := 20+rng.IntN(184), 20+rng.IntN(184), 12+rng.IntN(14)
		var col [3]byte
		for k := range col {
			col[k] = byte(rng.IntN(80))
		}
		col[channel] = byte(200 + rng.IntN(56))
		for y := max(0, cy-r); y < min(224, cy+r); y++ {
			for x := max(0, cx-r); x < min(224, cx+r); x++ {
				if (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r {
					copy(rgb[3*(y*224+x):], col[:])
				}
			}
		}
	}
	return rgb
}

var (
	torchImagesMu sync.Mutex
	torchRGBs     = map[[2]int][]byte{}
	torchPNGs     = map[[2]int][]byte{}
)

// torchTestRGB is torchTestImage(c, i, 1), drawn once per test binary (the
// race detector makes drawing and encoding slow).
func torchTestRGB(c, i int) []byte {
	torchImagesMu.Lock()
	defer torchImagesMu.Unlock()
	rgb, ok := torchRGBs[[2]int{c, i}]
	if !ok {
		rgb = torchTestImage(c, i, 1)
		torchRGBs[[2]int{c, i}] = rgb
	}
	return rgb
}

// torchTestPNG is rgb (image i of class c) as a PNG, encoded once.
func torchTestPNG(t *testing.T, c, i int, rgb []byte) []byte {
	t.Helper()
	torchImagesMu.Lock()
	defer torchImagesMu.Unlock()
	if b, ok := torchPNGs[[2]int{c, i}]; ok {
		return b
	}
	var buf bytes.Buffer
	if err := imaging.EncodePNG(&buf, rgb, 224, 224); err != nil {
		t.Fatalf("encode png: %v", err)
	}
	torchPNGs[[2]int{c, i}] = buf.Bytes()
	return buf.Bytes()
}

// memImages is an ImageSource over PNGs in memory, keyed by object key; a
// missing key is objstore.ErrNotFound, as from the real store.
type memImages struct {
	png map[string][]byte
	// fail, when set, is returned for every read.
	fail error
}

func (m *memImages) PNG(ctx context.Context, ex Example) ([]byte, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	b, ok := m.png[ex.Key]
	if !ok {
		return nil, fmt.Errorf("get %s/%s: %w", ex.Bucket, ex.Key, objstore.ErrNotFound)
	}
	return b, nil
}

// torchSet is a generated data set: per class, train, holdout_1 (select)
// and test images; test images are only returned, never put in the job.
type torchSet struct {
	job  Job
	test []torchTestCase
}

type torchTestCase struct {
	class int
	rgb   []byte
}

func newTorchSet(t *testing.T, train, sel, test int) torchSet {
	t.Helper()
	src := &memImages{png: map[string][]byte{}}
	job := Job{
		Name: "torch-test", Version: "0.0.1", Classes: torchClasses, Images: src,
		Seed: 7, WorkDir: t.TempDir(), Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
	}
	var set torchSet
	for c, class := range torchClasses {
		for i := range train + sel + test {
			rgb := torchTestRGB(c, i)
			if i >= train+sel {
				set.test = append(set.test, torchTestCase{class: c, rgb: rgb})
				continue
			}
			split := "train"
			if i >= train {
				split = "holdout_1"
			}
			id := fmt.Sprintf("%s-%03d", class, i)
			ex := Example{ImageID: id, Class: class, Split: split, Bucket: "processed",
				Key: "transformed_eye_dataset/" + split + "/" + class + "/" + id + ".png"}
			src.png[ex.Key] = torchTestPNG(t, c, i, rgb)
			if split == "train" {
				job.Train = append(job.Train, ex)
			} else {
				job.Select = append(job.Select, ex)
			}
		}
	}
	set.job = job
	return set
}

var (
	torchEnginesMu sync.Mutex
	torchEngines   = map[TorchConfig]*TorchEngine{}
)

// torchEngine makes (once per configuration: each probe imports torch) an
// engine, failing the test loudly when PyTorch is missing.
func torchEngine(t *testing.T, cfg TorchConfig) *TorchEngine {
	t.Helper()
	torchEnginesMu.Lock()
	defer torchEnginesMu.Unlock()
	if e := torchEngines[cfg]; e != nil {
		return e
	}
	e, err := NewTorchEngine(cfg)
	if err != nil {
		t.Fatalf("PyTorch engine (these tests need PyTorch: scripts/setup.sh installs python3-torch and python3-torchvision): %v", err)
	}
	torchEngines[cfg] = e
	return e
}

// smallCNN is the fast test configuration.
var smallCNN = TorchConfig{Arch: "smallcnn", Epochs: 4, BatchSize: 16, LR: 3e-3}

func initTorchORT(t *testing.T) {
	t.Helper()
	if err := inference.InitRuntime(testenv.ORTLibrary(t)); err != nil {
		t.Fatalf("init onnxruntime: %v", err)
	}
}

func TestTorchTrainsAModel(t *testing.T) {
	initTorchORT(t)
	e := torchEngine(t, smallCNN)
	set := newTorchSet(t, 20, 8, 10)
	job := set.job
	// One image gone from the store and one that is not a PNG: skipped and
	// counted, not fatal.
	src := job.Images.(*memImages)
	job.Train = append(job.Train, Example{ImageID: "gone", Class: torchClasses[0], Bucket: "processed", Key: "gone.png"})
	src.png["junk.png"] = []byte("not a png")
	job.Train = append(job.Train, Example{ImageID: "junk", Class: torchClasses[1], Bucket: "processed", Key: "junk.png"})
	var progress []Progress
	job.Progress = func(p Progress) { progress = append(progress, p) }

	start := time.Now()
	res, err := e.Train(context.Background(), job)
	if err != nil {
		t.Fatalf("train: %v", err)
	}
	t.Logf("trained in %s", time.Since(start).Round(time.Millisecond))

	if len(progress) != smallCNN.Epochs {
		t.Fatalf("progress reports = %d, want one per epoch (%d): %+v", len(progress), smallCNN.Epochs, progress)
	}
	for i, p := range progress {
		if p.Epoch != i+1 || p.Epochs != smallCNN.Epochs || !(p.Loss > 0) || !(p.ImagesPerSec > 0) {
			t.Errorf("progress %d = %+v, want epoch %d of %d with a loss and a speed", i, p, i+1, smallCNN.Epochs)
		}
	}

	model, err := inference.LoadModel(res.Files, inference.SessionOptions{ParallelRuns: 1})
	if err != nil {
		t.Fatalf("eyeflow's ONNX Runtime does not load the trained model: %v", err)
	}
	defer model.Close()
	if strings.Join(model.Labels, ",") != strings.Join(torchClasses, ",") {
		t.Errorf("labels = %v, want %v", model.Labels, torchClasses)
	}
	// Held-out images (neither trained nor selected on): chance is 1/3.
	var batch [][]byte
	for _, tc := range set.test {
		batch = append(batch, tc.rgb)
	}
	probs, err := model.Run(batch)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	correct := 0
	for i, p := range probs {
		if argmax(p) == set.test[i].class {
			correct++
		}
	}
	acc := float64(correct) / float64(len(set.test))
	t.Logf("held-out accuracy %.3f (%d/%d), chance 0.333", acc, correct, len(set.test))
	if acc < 0.8 {
		t.Errorf("held-out accuracy %.3f: want at least 0.8 (chance is 0.333)", acc)
	}

	tr := model.Card.Training
	if tr == nil {
		t.Fatal("model card has no training section")
	}
	if tr.Engine != EngineTorch || !strings.HasPrefix(tr.Device, "cpu") || tr.TrainImages != 60 || tr.SelectImages != 24 {
		t.Errorf("training = engine %q device %q train %d select %d, want torch, cpu..., 60, 24", tr.Engine, tr.Device, tr.TrainImages, tr.SelectImages)
	}
	if tr.Skipped["missing"] != 1 || tr.Skipped["not_a_png"] != 1 {
		t.Errorf("skipped = %v, want missing 1, not_a_png 1", tr.Skipped)
	}
	if len(tr.Epochs) != smallCNN.Epochs || !(tr.ImagesPerSec > 0) || !(tr.Seconds > 0) || len(tr.DatasetDigest) != 64 {
		t.Errorf("training = %d epochs, %v images/s, %v s, digest %q", len(tr.Epochs), tr.ImagesPerSec, tr.Seconds, tr.DatasetDigest)
	}
	for _, k := range []string{"arch", "epochs", "batch_size", "lr", "seed"} {
		if _, ok := tr.Settings[k]; !ok {
			t.Errorf("settings lack %q: %v", k, tr.Settings)
		}
	}
	for _, k := range []string{"torch", "torchvision", "python", "best_epoch", "onnx_parity_max_abs_diff"} {
		if _, ok := tr.Extra[k]; !ok {
			t.Errorf("extra lacks %q: %v", k, tr.Extra)
		}
	}
	if model.Card.Name != job.Name || model.Card.Version != job.Version {
		t.Errorf("card is %s %s, want %s %s", model.Card.Name, model.Card.Version, job.Name, job.Version)
	}

	t.Run("export parity", func(t *testing.T) {
		checkTorchLogits(t, job.WorkDir, res.Files.ONNX)
	})
}

func argmax(p []float64) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

// checkTorchLogits feeds the images of the run's parity.json to model.onnx
// in eyeflow's ONNX Runtime, normalised as the classifier does, and
// compares the raw logits with those PyTorch computed.
func checkTorchLogits(t *testing.T, workDir string, onnx []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(workDir, "out", "parity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Files  []string    `json:"files"`
		Logits [][]float32 `json:"logits"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("parity.json: %v", err)
	}
	if len(p.Files) < 2 || len(p.Files) != len(p.Logits) {
		t.Fatalf("parity.json has %d files and %d logit rows, want at least 2 of each", len(p.Files), len(p.Logits))
	}
	n := len(p.Files)
	const plane = 224 * 224
	input := make([]float32, n*3*plane)
	for i, f := range p.Files {
		data, err := os.ReadFile(filepath.Join(workDir, "data", f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := imaging.Decode(data, imaging.DefaultOptions())
		if err != nil {
			t.Fatalf("decode %s: %v", f, err)
		}
		for px := range plane {
			for c := range 3 {
				v := float64(img.RGB[3*px+c])
				input[(i*3+c)*plane+px] = float32((v/255 - models.ImageNetMean[c]) / models.ImageNetStd[c])
			}
		}
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(onnx, []string{"input"}, []string{"output"}, nil)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer sess.Destroy()
	in, err := ort.NewTensor(ort.NewShape(int64(n), 3, 224, 224), input)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := sess.Run([]ort.Value{in}, outs); err != nil {
		t.Fatalf("run: %v", err)
	}
	defer outs[0].Destroy()
	got := outs[0].(*ort.Tensor[float32]).GetData()
	width := len(p.Logits[0])
	if len(got) != n*width {
		t.Fatalf("ONNX Runtime gave %d values, want %d x %d", len(got), n, width)
	}
	var worst, spread float64
	for i := range n {
		for k := range width {
			worst = max(worst, math.Abs(float64(got[i*width+k]-p.Logits[i][k])))
			spread = max(spread, math.Abs(float64(p.Logits[i][k]-p.Logits[0][k])))
		}
	}
	t.Logf("%d images x %d logits: max |ONNX Runtime - PyTorch| = %.2g", n, width, worst)
	if !(worst <= 1e-3) {
		t.Errorf("max |logit difference| = %g, want at most 1e-3", worst)
	}
	if spread == 0 {
		t.Errorf("PyTorch gave every parity image the same logits: the check compares nothing")
	}
}

// TestTorchExportParityDenseNet121 exports the default architecture (one
// short epoch: the weights barely matter, the graph does) and checks
// eyeflow's ONNX Runtime reproduces PyTorch's logits. It starts from an
// ImageNet-shaped (1000-class) state dict saved the way old checkpoints
// are (DataParallel's "module." prefix, torchvision's old DenseNet key
// names): everything but the classifier head must load.
func TestTorchExportParityDenseNet121(t *testing.T) {
	initTorchORT(t)
	weights := filepath.Join(t.TempDir(), "densenet121-imagenet-shaped.pt")
	save := exec.Command(torchEngine(t, smallCNN).Python(), "-c", `
import re, sys, torch, torchvision
torch.manual_seed(0)
sd = torchvision.models.densenet121(weights=None).state_dict()
torch.save({"module." + re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in sd.items()}, sys.argv[1])
`, weights)
	if out, err := save.CombinedOutput(); err != nil {
		t.Fatalf("save init weights: %v\n%s", err, out)
	}
	e := torchEngine(t, TorchConfig{Arch: "densenet121", Epochs: 1, BatchSize: 6, InitWeights: weights})
	set := newTorchSet(t, 2, 2, 0)
	res, err := e.Train(context.Background(), set.job)
	if err != nil {
		t.Fatalf("train: %v", err)
	}
	card, err := models.ParseCard(res.Files.Card)
	if err != nil {
		t.Fatal(err)
	}
	if card.Arch != "densenet121" {
		t.Errorf("arch = %q", card.Arch)
	}
	init, _ := card.Training.Extra["init_weights"].(map[string]any)
	if init["loaded"] != float64(725) || init["skipped"] != float64(2) {
		t.Errorf("init weights = %v, want 725 tensors loaded and the 2 of the 1000-class head skipped", init)
	}
	if _, ok := card.Training.Settings["init_weights_sha256"]; !ok {
		t.Errorf("settings %v lack the init weights' digest", card.Training.Settings)
	}
	checkTorchLogits(t, set.job.WorkDir, res.Files.ONNX)
}

// TestTorchDDPGloo trains with two processes under torchrun
// (DistributedDataParallel over gloo on the CPU).
func TestTorchDDPGloo(t *testing.T) {
	initTorchORT(t)
	cfg := smallCNN
	cfg.NProc, cfg.Epochs = 2, 2
	e := torchEngine(t, cfg)
	set := newTorchSet(t, 12, 4, 0)
	var epochs int
	set.job.Progress = func(Progress) { epochs++ }
	res, err := e.Train(context.Background(), set.job)
	if err != nil {
		t.Fatalf("2-process training: %v", err)
	}
	if epochs != 2 {
		t.Errorf("progress reports = %d, want 2 (rank 0 only)", epochs)
	}
	model, err := inference.LoadModel(res.Files, inference.SessionOptions{ParallelRuns: 1})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer model.Close()
	tr := model.Card.Training
	if !strings.Contains(tr.Device, "x2 processes (DDP, gloo)") {
		t.Errorf("device = %q, want 2 DDP processes over gloo", tr.Device)
	}
	if p, _ := tr.Extra["processes"].(float64); p != 2 {
		t.Errorf("extra.processes = %v, want 2", tr.Extra["processes"])
	}
	checkTorchLogits(t, set.job.WorkDir, res.Files.ONNX)
}

// TestTorchDeterministic: on the CPU the same job and seed give the same
// model byte for byte, and another seed another model.
func TestTorchDeterministic(t *testing.T) {
	initTorchORT(t)
	cfg := smallCNN
	cfg.Epochs = 1
	e := torchEngine(t, cfg)
	train := func(seed uint64) []byte {
		t.Helper()
		set := newTorchSet(t, 6, 2, 0)
		set.job.Seed = seed
		res, err := e.Train(context.Background(), set.job)
		if err != nil {
			t.Fatalf("train (seed %d): %v", seed, err)
		}
		return res.Files.ONNX
	}
	a, b, c := train(3), train(3), train(4)
	if !bytes.Equal(a, b) {
		t.Error("two runs with seed 3 exported different models")
	}
	if bytes.Equal(a, c) {
		t.Error("seeds 3 and 4 exported the same model: the seed is not used")
	}
}

// TestTorchRefuses: runs that cannot give a model end as ErrRefused with a
// reason that says what happened.
func TestTorchRefuses(t *testing.T) {
	initTorchORT(t)
	cfg := smallCNN
	cfg.Epochs = 1
	e := torchEngine(t, cfg)
	for _, tt := range []struct {
		name, fault string
		job         func(*Job)
		want        []string
	}{
		{name: "crash", fault: "crash", want: []string{"crashed (exit status 1)", "RuntimeError: EYEFLOW_TORCH_FAULT=crash"}},
		{name: "non-finite loss", fault: "nan", want: []string{"training loss of epoch 1 is nan"}},
		{name: "bad onnx", fault: "bad-onnx", want: []string{"model.onnx does not load in ONNX Runtime"}},
		{name: "export disagrees", fault: "parity", want: []string{"disagrees with the trained PyTorch model"}},
		{name: "one class", job: func(j *Job) {
			var one []Example
			for _, ex := range j.Train {
				if ex.Class == torchClasses[0] {
					one = append(one, ex)
				}
			}
			j.Train = one
		}, want: []string{"usable images of 1 class(es) [blue_discs]"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("EYEFLOW_TORCH_FAULT", tt.fault)
			set := newTorchSet(t, 4, 2, 0)
			if tt.job != nil {
				tt.job(&set.job)
			}
			_, err := e.Train(context.Background(), set.job)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("err = %v, want one wrapping ErrRefused", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("reason %q does not say %q", err, w)
				}
			}
		})
	}

	t.Run("init weights that are no state dict", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "weights.pt")
		if err := os.WriteFile(bad, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.InitWeights = bad
		e := torchEngine(t, c)
		if _, ok := e.Settings()["init_weights_sha256"]; !ok {
			t.Errorf("settings %v lack the init weights' digest", e.Settings())
		}
		_, err := e.Train(context.Background(), newTorchSet(t, 4, 2, 0).job)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not a PyTorch state dict") {
			t.Fatalf("err = %v, want a refusal naming the bad state dict", err)
		}
	})
}

// TestTorchHangIsKilled: a child past the timeout is killed and the run
// refused with a reason that says so.
func TestTorchHangIsKilled(t *testing.T) {
	t.Setenv("EYEFLOW_TORCH_FAULT", "hang")
	cfg := smallCNN
	cfg.Timeout = 5 * time.Second
	e := torchEngine(t, cfg)
	set := newTorchSet(t, 4, 2, 0)
	start := time.Now()
	_, err := e.Train(context.Background(), set.job)
	took := time.Since(start)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "timeout: the training process ran past 5s") {
		t.Fatalf("err = %v, want a timeout refusal", err)
	}
	if took > cfg.Timeout+8*time.Second {
		t.Errorf("Train returned %s after the timeout", took-cfg.Timeout)
	}
	pids, _ := filepath.Glob(filepath.Join(set.job.WorkDir, "out", "hang.*.pid"))
	t.Logf("returned after %s; the child had reached the hang: %v", took.Round(time.Millisecond), len(pids) > 0)
	// Nothing that ran the job's script may survive (zombies, whose
	// command line is empty, do not count).
	waitNoTorchProcesses(t, set.job.WorkDir)
}

// TestTorchProcessGroupKill: what the child starts (torchrun's workers,
// data-loader processes) dies with it. A shell stands in for train.py so
// that the grandchild surely exists when the timeout fires.
func TestTorchProcessGroupKill(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", "sleep 300 & echo $! > "+pidFile+"; wait")
	torchProcessGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err == nil {
		t.Fatal("the shell was not killed")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the grandchild never started: %v", err)
	}
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Gone, or a zombie waiting for init to reap it.
		stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil || bytes.Contains(stat, []byte(") Z ")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %s survived its process group's kill: %s", pid, stat)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNoTorchProcesses fails the test if a process whose command line
// mentions dir is still alive a few seconds on.
func waitNoTorchProcesses(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := torchProcesses(t, dir)
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the killed run still alive: %v", alive)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// torchProcesses lists the live processes whose command line mentions dir.
func torchProcesses(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ent := range entries {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		out = append(out, ent.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return out
}

// TestTorchNotRefused: a cancelled request and an unreadable store are not
// the job's fault, so they must not end as refusals (the request would be
// lost).
func TestTorchNotRefused(t *testing.T) {
	e := torchEngine(t, smallCNN)
	t.Run("cancelled", func(t *testing.T) {
		t.Setenv("EYEFLOW_TORCH_FAULT", "hang")
		set := newTorchSet(t, 4, 2, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := e.Train(ctx, set.job)
		if err == nil || errors.Is(err, ErrRefused) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the context's error, not a refusal", err)
		}
		waitNoTorchProcesses(t, set.job.WorkDir)
	})
	t.Run("store down", func(t *testing.T) {
		set := newTorchSet(t, 4, 2, 0)
		set.job.Images.(*memImages).fail = errors.New("connection refused")
		_, err := e.Train(context.Background(), set.job)
		if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("err = %v, want the read error, not a refusal", err)
		}
	})
}

func TestTorchEngineConfig(t *testing.T) {
	t.Run("no torch", func(t *testing.T) {
		fake := filepath.Join(t.TempDir(), "python3")
		script := "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n"
		if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := NewTorchEngine(TorchConfig{Python: fake})
		if err == nil || !strings.Contains(err.Error(), "no usable Python with PyTorch") || !strings.Contains(err.Error(), "No module named 'torch'") {
			t.Fatalf("err = %v, want one saying torch is missing", err)
		}
	})
	t.Run("bad settings", func(t *testing.T) {
		for _, cfg := range []TorchConfig{{Epochs: -1}, {LR: math.NaN()}, {NProc: -2}, {Device: "tpu"}, {Device: "cpu:1"}, {InitWeights: "/nonexistent/weights.pt"}} {
			if _, err := NewTorchEngine(cfg); err == nil {
				t.Errorf("NewTorchEngine(%+v) accepted", cfg)
			}
		}
	})
	t.Run("unknown arch", func(t *testing.T) {
		_, err := NewTorchEngine(TorchConfig{Arch: "vgg1000"})
		if err == nil || !strings.Contains(err.Error(), "vgg1000") {
			t.Fatalf("err = %v, want one naming the architecture", err)
		}
	})
	t.Run("defaults and settings", func(t *testing.T) {
		e := torchEngine(t, TorchConfig{})
		if e.Name() != EngineTorch {
			t.Errorf("name = %q", e.Name())
		}
		s := e.Settings()
		if s["arch"] != DefaultTorchArch || s["epochs"] != DefaultTorchEpochs || s["batch_size"] != DefaultTorchBatchSize || s["lr"] != DefaultTorchLR {
			t.Errorf("settings = %v, want the defaults", s)
		}
		if e.Env().Torch == "" {
			t.Errorf("env = %+v, want the torch version", e.Env())
		}
	})
}

func TestTorchPathElem(t *testing.T) {
	for in, want := range map[string]string{"amd": "amd", "img_01.png": "img_01.png", "..": "", "a/b": "", "": "", "x\x00": ""} {
		got := torchPathElem(in)
		if want != "" && got != want || want == "" && (got == in || strings.ContainsAny(got, "/.") || got == "") {
			t.Errorf("torchPathElem(%q) = %q", in, got)
		}
	}
}
