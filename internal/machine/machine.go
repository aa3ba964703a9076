// Package machine sizes eyeflow's defaults to the host: every concurrency,
// thread and run count that is not given on the command line derives from
// the cores Go may use (GOMAXPROCS, which follows a cgroup CPU quota) and,
// where memory bounds it, the memory the process may use (the smaller of
// MemTotal and a cgroup memory limit).
//
// The rules are pure functions of a Machine, so they are tested for any
// core count (2 to 64) on any host; Detect reads the host once.
package machine

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Machine is what the defaults are derived from.
type Machine struct {
	// Cores is the number of CPUs Go runs on (GOMAXPROCS).
	Cores int
	// Memory is the bytes the process may use; 0 when unknown (no memory
	// bound is then applied).
	Memory int64
}

var (
	detectOnce sync.Once
	detected   Machine
)

// Detect reads this host: GOMAXPROCS and the memory limit. The result is
// cached: the defaults of one process all see the same machine.
func Detect() Machine {
	detectOnce.Do(func() {
		detected = Machine{Cores: runtime.GOMAXPROCS(0), Memory: memoryLimit()}
	})
	return detected
}

// ResizeBytesPerImage is the memory one image in flight in the resize stage
// may need: the original (up to a few MB), the DCT-scaled decode and the
// filter's rows of a large photograph, the output and its PNG. Measured at
// about 10 MiB for a 2048x1536 JPEG (BENCHMARKS.md, "Memory"); the bound
// leaves room for larger photographs.
const ResizeBytesPerImage = 48 << 20

// ResizeConcurrency is the resize stage's default: one image per core (its
// work is CPU-bound decoding and filtering), fewer when a quarter of the
// memory does not hold that many images in flight.
func (m Machine) ResizeConcurrency() int {
	return m.boundByMemory(max(m.Cores, 1), ResizeBytesPerImage, 4)
}

// IOConcurrency is the default of stages whose time is spent waiting on the
// object store or NATS rather than computing (the splitter's copies, the
// upload ledger, labelsink, eyeflow put): two per core, at least 4, at most
// 64 (past that the store, not the client, is the limit).
func (m Machine) IOConcurrency() int {
	return min(max(2*m.Cores, 4), 64)
}

// boundByMemory caps n so that n*each fits in 1/share of the memory (at
// least 1); unknown memory caps nothing.
func (m Machine) boundByMemory(n int, each int64, share int64) int {
	if m.Memory <= 0 || each <= 0 {
		return n
	}
	return max(1, min(n, int(m.Memory/share/each)))
}

// memoryLimit is the smaller of MemTotal and the cgroup's limit (v2
// memory.max, v1 memory.limit_in_bytes); 0 when neither can be read.
func memoryLimit() int64 {
	var limit int64
	if total := memTotal("/proc/meminfo"); total > 0 {
		limit = total
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v <= 0 || v >= 1<<60 { // "max", or v1's "unlimited" page-rounded int64
			continue
		}
		if limit == 0 || v < limit {
			limit = v
		}
	}
	return limit
}

func memTotal(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
