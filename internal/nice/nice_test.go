package nice

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// threadsAt counts this process's threads whose nice value is n.
func threadsAt(t *testing.T, n int) int {
	t.Helper()
	counts, err := Threads()
	if err != nil {
		t.Fatal(err)
	}
	return counts[n]
}

func TestPoolRunsOnLoweredThreads(t *testing.T) {
	base, err := threadNice()
	if err != nil {
		t.Fatal(err)
	}
	const increment = 7
	want := min(base+increment, Max)
	p, err := New(3, increment)
	if err != nil {
		t.Fatal(err)
	}
	if got := threadsAt(t, want); got < 3 {
		t.Errorf("%d threads at nice %d after New(3, %d), want 3", got, want, increment)
	}
	var got int
	var gerr error
	p.Do(func() { got, gerr = threadNice() })
	if gerr != nil || got != want {
		t.Errorf("Do ran at nice %d (%v), want %d", got, gerr, want)
	}
	if mine, _ := threadNice(); mine != base {
		t.Errorf("the caller's thread is at nice %d, want it left at %d", mine, base)
	}

	// Closed, the pool's threads live on (a child process started from one
	// of them with a parent-death signal would die with it) and serve the
	// next pool of the level instead of new ones.
	tids := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			p.Do(func() {
				mu.Lock()
				tids[syscall.Gettid()] = true
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // so that the three run at once
			})
		})
	}
	wg.Wait()
	p.Close()
	if len(tids) != 3 {
		t.Fatalf("three runs at once used threads %v, want three", tids)
	}
	for tid := range tids {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); err != nil {
			t.Errorf("thread %d ended with the pool: %v", tid, err)
		}
	}
	again, err := New(2, increment)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	var reused int
	again.Do(func() { reused = syscall.Gettid() })
	if !tids[reused] {
		t.Errorf("the next pool ran on thread %d, not one of %v", reused, tids)
	}
	if n := threadsAt(t, want); n != 3 {
		t.Errorf("%d threads at nice %d after a second pool, want the same 3", n, want)
	}
}

func TestPoolPanicsInTheCaller(t *testing.T) {
	p, err := New(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the function's panic", v)
			}
		}()
		p.Do(func() { panic("boom") })
	}()
	ran := false
	p.Do(func() { ran = true })
	if !ran {
		t.Error("the pool's thread did not survive a panic")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tt := range []struct{ n, inc int }{{0, 5}, {1, 0}, {1, Max + 1}, {1, -3}} {
		if p, err := New(tt.n, tt.inc); err == nil {
			p.Close()
			t.Errorf("New(%d, %d) succeeded, want an error", tt.n, tt.inc)
		}
	}
}
