package machine

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// The defaults follow the cores from 2 to 64: resize takes one image per
// core while a quarter of the memory holds them, the I/O-bound stages two
// per core within 4..64.
func TestDefaultsFollowTheCores(t *testing.T) {
	const gib = int64(1) << 30
	for cores := 2; cores <= 64; cores++ {
		m := Machine{Cores: cores, Memory: 64 * gib}
		if got := m.ResizeConcurrency(); got != cores {
			t.Errorf("%d cores, 64 GiB: resize concurrency %d, want %d (one per core)", cores, got, cores)
		}
		if got, want := m.IOConcurrency(), min(max(2*cores, 4), 64); got != want {
			t.Errorf("%d cores: I/O concurrency %d, want %d", cores, got, want)
		}
		// 1 GiB: a quarter holds 5 images of ResizeBytesPerImage.
		small := Machine{Cores: cores, Memory: gib}
		if got, want := small.ResizeConcurrency(), min(cores, 5); got != want {
			t.Errorf("%d cores, 1 GiB: resize concurrency %d, want %d (memory-bound)", cores, got, want)
		}
	}
	if got := (Machine{Cores: 8, Memory: 1}).ResizeConcurrency(); got != 1 {
		t.Errorf("no memory to speak of: resize concurrency %d, want 1", got)
	}
	if got := (Machine{Cores: 8}).ResizeConcurrency(); got != 8 {
		t.Errorf("memory unknown: resize concurrency %d, want 8", got)
	}
}

func TestDetect(t *testing.T) {
	m := Detect()
	if m.Cores != runtime.GOMAXPROCS(0) {
		t.Errorf("cores %d, GOMAXPROCS %d", m.Cores, runtime.GOMAXPROCS(0))
	}
	if runtime.GOOS == "linux" && m.Memory <= 0 {
		t.Errorf("memory %d on linux: /proc/meminfo not read", m.Memory)
	}
}

func TestMemTotal(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(p, []byte("MemFree:  100 kB\nMemTotal:       24683652 kB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := memTotal(p); got != 24683652<<10 {
		t.Errorf("memTotal = %d", got)
	}
	if got := memTotal(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Errorf("missing file: %d", got)
	}
}
