package classifier

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// The envs of one process read and decode a processed PNG once: concurrent
// and later callers share the first load; a failed load is not kept; the
// oldest entries leave first once the cache is full.
func TestPixelCache(t *testing.T) {
	c := newPixelCache(2)
	var loads atomic.Int32
	release := make(chan struct{})
	load := func() ([]byte, error) {
		loads.Add(1)
		<-release
		return []byte("a"), nil
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if got, err := c.get("a", load); err != nil || string(got) != "a" {
				t.Errorf("get a = %q, %v", got, err)
			}
		})
	}
	for c.len() == 0 {
		// the first caller has registered its load
	}
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("three envs loaded the same image %d times, want once", n)
	}

	failed := errors.New("store down")
	if _, err := c.get("b", func() ([]byte, error) { return nil, failed }); !errors.Is(err, failed) {
		t.Fatalf("failed load: %v", err)
	}
	if got, err := c.get("b", func() ([]byte, error) { return []byte("b"), nil }); err != nil || string(got) != "b" {
		t.Fatalf("a failed load was kept: %q, %v", got, err)
	}

	for i := range 3 {
		k := fmt.Sprint("k", i)
		_, _ = c.get(k, func() ([]byte, error) { return []byte(k), nil })
	}
	if c.len() != 2 {
		t.Fatalf("%d entries, want the capacity 2", c.len())
	}
	loads.Store(0)
	_, _ = c.get("a", func() ([]byte, error) { loads.Add(1); return []byte("a"), nil })
	if loads.Load() != 1 {
		t.Fatal("the oldest entry was not evicted")
	}
}
