package imaging

import (
	"bytes"
	"eyeflow/internal/testenv"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func goldenDir(tb testing.TB) string {
	tb.Helper()
	return testenv.GoldenDir(tb)
}

var goldenNames = testenv.GoldenNames()

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
