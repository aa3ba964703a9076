package nice

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lower adds increment to the calling thread's nice value (capped at Max):
// on Linux, setpriority on a thread id changes that thread alone.
func lower(increment int) error {
	tid := syscall.Gettid()
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return err
	}
	// The raw system call returns 20 - nice.
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, min(20-raw+increment, Max))
}

// threadNice is the calling thread's nice value.
func threadNice() (int, error) {
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	return 20 - raw, err
}

func mainThread() bool { return syscall.Gettid() == syscall.Getpid() }

// Threads counts this process's threads at each nice value, from
// /proc/self/task/*/stat: what a test or an operator checks the pool by.
func Threads() (map[int]int, error) {
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil || len(stats) == 0 {
		return nil, fmt.Errorf("nice: no threads under /proc/self/task: %v", err)
	}
	counts := make(map[int]int)
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended meanwhile
		}
		// The command name (field 2) may hold spaces and parentheses:
		// fields are counted from its last ')', which field 3 follows.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 19-2 {
			return nil, fmt.Errorf("nice: %s: %d fields", p, len(f)+2)
		}
		v, err := strconv.Atoi(f[19-3])
		if err != nil {
			return nil, fmt.Errorf("nice: %s: field 19: %w", p, err)
		}
		counts[v]++
	}
	return counts, nil
}
