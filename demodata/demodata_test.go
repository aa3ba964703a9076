package demodata

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestClasses(t *testing.T) {
	want := []string{
		"normal", "diabetic_retinopathy", "glaucoma", "cataract", "amd",
		"hypertensive_retinopathy", "pathological_myopia", "retinal_vein_occlusion",
		"retinal_detachment", "retinitis_pigmentosa", "central_serous_chorioretinopathy",
		"macular_hole", "papilledema", "optic_atrophy", "chorioretinitis",
	}
	sort.Strings(want)
	got := Classes()
	if !slices.Equal(got, want) {
		t.Fatalf("Classes() = %v, want %v", got, want)
	}
	if len(got) != NumClasses {
		t.Fatalf("len = %d, want %d", len(got), NumClasses)
	}
	got[0] = "mutated"
	if Classes()[0] == "mutated" {
		t.Fatal("Classes returns shared slice")
	}
}

func TestCounts(t *testing.T) {
	tests := []struct {
		total    int
		minRatio float64 // required max/min ratio (0: no check)
	}{
		{0, 0}, {1, 0}, {7, 0}, {14, 0}, {15, 0}, {16, 0}, {100, 0},
		{DefaultTotal, 20}, {1000, 20}, {12345, 30},
	}
	for _, tc := range tests {
		c := Counts(tc.total)
		sum, mx, mn := 0, 0, 1<<62
		for _, cl := range Classes() {
			n, ok := c[cl]
			if !ok {
				t.Fatalf("Counts(%d) misses %s", tc.total, cl)
			}
			sum += n
			mx, mn = max(mx, n), min(mn, n)
		}
		if len(c) != NumClasses {
			t.Errorf("Counts(%d) has %d keys", tc.total, len(c))
		}
		if sum != tc.total {
			t.Errorf("Counts(%d) sums to %d", tc.total, sum)
		}
		if tc.total >= NumClasses && mn < 1 {
			t.Errorf("Counts(%d): a class has no images: %v", tc.total, c)
		}
		if c["normal"] != mx {
			t.Errorf("Counts(%d): normal (%d) is not the largest (%d)", tc.total, c["normal"], mx)
		}
		if tc.minRatio > 0 && float64(mx)/float64(mn) < tc.minRatio {
			t.Errorf("Counts(%d): max/min = %d/%d, want ratio >= %g", tc.total, mx, mn, tc.minRatio)
		}
	}
	if !mapsEqual(Counts(600), Counts(600)) {
		t.Error("Counts not deterministic")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func smallOpts(out string, total int, seed uint64) Options {
	return Options{Out: out, Total: total, Width: testW, Height: testH, Quality: 85, Seed: seed}
}

// readTree returns relative path -> content of all files under dir.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestDeterminism(t *testing.T) {
	ctx := context.Background()
	gen := func(seed uint64, workers int) map[string][]byte {
		dir := t.TempDir()
		o := smallOpts(dir, 20, seed)
		o.Workers = workers
		if _, err := Generate(ctx, o); err != nil {
			t.Fatal(err)
		}
		return readTree(t, dir)
	}
	a, b, other := gen(1, 1), gen(1, 4), gen(2, 3)
	tests := []struct {
		name      string
		x, y      map[string][]byte
		wantEqual bool
	}{
		{"same options, different worker counts", a, b, true},
		{"different seed", a, other, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.x) != 20 || len(tc.y) != 20 {
				t.Fatalf("file counts %d, %d", len(tc.x), len(tc.y))
			}
			same := 0
			for name, data := range tc.x {
				if bytes.Equal(data, tc.y[name]) {
					same++
				}
			}
			if tc.wantEqual && same != len(tc.x) {
				t.Errorf("%d of %d files identical, want all", same, len(tc.x))
			}
			if !tc.wantEqual && same != 0 {
				t.Errorf("%d of %d files identical, want none", same, len(tc.x))
			}
		})
	}
	// In-memory rendering is deterministic and matches per (class, index).
	o := Options{Width: testW, Height: testH, Seed: 9}
	i1, _ := Image("glaucoma", 3, o)
	i2, _ := Image("glaucoma", 3, o)
	i3, _ := Image("glaucoma", 4, o)
	if !bytes.Equal(i1.Pix, i2.Pix) {
		t.Error("Image not deterministic")
	}
	if bytes.Equal(i1.Pix, i3.Pix) {
		t.Error("different index gives identical image")
	}
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	const total = 30
	var calls []int
	o := smallOpts(dir, total, 3)
	o.Progress = func(done, n int) {
		if n != total {
			t.Errorf("progress total %d", n)
		}
		calls = append(calls, done)
	}
	sum, err := Generate(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files != total || len(calls) != total || calls[len(calls)-1] != total {
		t.Fatalf("Files = %d, progress calls = %v", sum.Files, calls)
	}
	for i, d := range calls {
		if d != i+1 {
			t.Fatalf("progress not monotonic: %v", calls)
		}
	}
	if !mapsEqual(sum.Counts, Counts(total)) {
		t.Errorf("Summary.Counts = %v, want %v", sum.Counts, Counts(total))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("unexpected file %s in root", e.Name())
		}
		dirs = append(dirs, e.Name())
	}
	if !slices.Equal(dirs, Classes()) {
		t.Fatalf("class dirs = %v, want %v", dirs, Classes())
	}
	var bytesTotal int64
	for _, class := range Classes() {
		files, _ := os.ReadDir(filepath.Join(dir, class))
		if len(files) != sum.Counts[class] {
			t.Errorf("%s: %d files, want %d", class, len(files), sum.Counts[class])
		}
		for i, f := range files {
			if want := FileName(class, i); f.Name() != want {
				t.Errorf("file %s, want %s", f.Name(), want)
			}
			p := filepath.Join(dir, class, f.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			bytesTotal += int64(len(data))
			img, err := jpeg.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if b := img.Bounds(); b.Dx() != testW || b.Dy() != testH {
				t.Errorf("%s: size %v, want %dx%d", p, b.Size(), testW, testH)
			}
		}
	}
	if bytesTotal != sum.Bytes {
		t.Errorf("Summary.Bytes = %d, files hold %d", sum.Bytes, bytesTotal)
	}
}

func TestValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"empty out", func(o *Options) { o.Out = "" }, "Out"},
		{"zero total", func(o *Options) { o.Total = 0 }, "Total"},
		{"negative total", func(o *Options) { o.Total = -3 }, "Total"},
		{"narrow", func(o *Options) { o.Width = 15 }, "width and height"},
		{"short", func(o *Options) { o.Height = 8 }, "width and height"},
		{"quality low", func(o *Options) { o.Quality = -1 }, "Quality"},
		{"quality high", func(o *Options) { o.Quality = 101 }, "Quality"},
		{"ok defaults", func(o *Options) { o.Quality = 0 }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := smallOpts(dir, 1, 1)
			tc.mod(&o)
			_, err := Generate(context.Background(), o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := Image("nope", 0, Options{Width: testW, Height: testH}); err == nil {
		t.Error("Image accepted unknown class")
	}
	if _, err := Image("normal", 0, Options{Width: 10, Height: testH}); err == nil {
		t.Error("Image accepted width 10")
	}
	img, err := Image("normal", 0, Options{Width: 64, Height: 48})
	if err != nil || img.Bounds().Dx() != 64 || img.Bounds().Dy() != 48 {
		t.Errorf("Image size: %v, %v", img.Bounds(), err)
	}
}

func TestCancellation(t *testing.T) {
	t.Run("already cancelled", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		sum, err := Generate(ctx, smallOpts(dir, 50, 1))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if sum.Files != 0 {
			t.Errorf("wrote %d files", sum.Files)
		}
	})
	t.Run("cancel during run", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		o := smallOpts(dir, 200, 1)
		o.Workers = 2
		o.Progress = func(done, total int) {
			if done == 3 {
				cancel()
			}
		}
		sum, err := Generate(ctx, o)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if sum.Files < 3 || sum.Files >= 200 {
			t.Errorf("Files = %d, want a partial run", sum.Files)
		}
		files := readTree(t, dir)
		if len(files) != sum.Files {
			t.Errorf("%d files on disk, summary says %d", len(files), sum.Files)
		}
		for name := range files {
			if strings.HasSuffix(name, ".tmp") {
				t.Errorf("temporary file left: %s", name)
			}
		}
	})
}
