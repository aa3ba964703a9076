package imaging

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// goldenDir finds shared/golden (read-only PIL references, kept outside the
// repository) by walking up from the test's working directory. It fails the
// test rather than skipping: parity is the point of this package.
func goldenDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("EYEFLOW_GOLDEN"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		c := filepath.Join(dir, "shared", "golden")
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("golden files not found: no shared/golden above %s (expected /work/shared/golden; set EYEFLOW_GOLDEN)", dir)
		}
		dir = parent
	}
}

var goldenNames = []string{"amd_0000", "cataract_0000", "diabetic_retinopathy_0000", "glaucoma_0000", "normal_0000"}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// readPNGRGB decodes a reference PNG into packed RGB.
func readPNGRGB(tb testing.TB, data []byte) *RGB8 {
	tb.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		tb.Fatal(err)
	}
	return toRGB8(img)
}

func diff(a, b []byte) (mae float64, max int) {
	var sum int
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		sum += d
		if d > max {
			max = d
		}
	}
	return float64(sum) / float64(len(a)), max
}

func TestGoldenParity(t *testing.T) {
	dir := goldenDir(t)
	for _, name := range goldenNames {
		t.Run(name, func(t *testing.T) {
			src := readFile(t, filepath.Join(dir, name+".jpg"))
			want := readPNGRGB(t, readFile(t, filepath.Join(dir, name+".224.png")))
			res, err := Decode(src, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			if res.Width != 224 || res.Height != 224 || res.SrcWidth != 2048 || res.SrcHeight != 1536 || res.Format != FormatJPEG {
				t.Fatalf("got %+v", res)
			}
			mae, max := diff(res.RGB, want.Pix)
			t.Logf("%s: MAE %.3f max %d", name, mae, max)
			if mae > 0.5 || max > 8 {
				t.Errorf("%s: parity MAE %.3f max %d, want <= 0.5 / 8", name, mae, max)
			}
		})
	}
}

func BenchmarkDecodeResize2048(b *testing.B) {
	src := readFile(b, filepath.Join(goldenDir(b), "amd_0000.jpg"))
	opts := DefaultOptions()
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(src, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeResizePNG(b *testing.B) {
	src := readFile(b, filepath.Join(goldenDir(b), "amd_0000.jpg"))
	opts := DefaultOptions()
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		res, err := Decode(src, opts)
		if err != nil {
			b.Fatal(err)
		}
		buf.Reset()
		if err := EncodePNG(&buf, res.RGB, res.Width, res.Height); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResize isolates the filter: 1024x768 (the DCT-scaled golden) to 224x224.
func BenchmarkResize(b *testing.B) {
	src := NewRGB8(1024, 768)
	for i := range src.Pix {
		src.Pix[i] = byte(i * 7)
	}
	b.ReportAllocs()
	for b.Loop() {
		Resize(src, 224, 224)
	}
}
