//go:build !linux

package nice

import "errors"

func lower(int) error { return errors.New("per-thread priorities are set on Linux only") }

func threadNice() (int, error) { return 0, errors.New("per-thread priorities are read on Linux only") }

func mainThread() bool { return false }

// Threads counts this process's threads at each nice value (Linux only).
func Threads() (map[int]int, error) {
	return nil, errors.New("nice: threads are counted on Linux only")
}
