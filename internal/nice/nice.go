package nice

import (
	"fmt"
	"runtime"
)

// Max is the largest increment: Linux's nice values end at 19.
const Max = 19

// Pool is a fixed set of OS threads, each at the process's nice value plus
// an increment, that run the functions given to Do one at a time each.
type Pool struct {
	work chan job
}

type job struct {
	f    func()
	done chan any // the panic f raised, or nil
}

// New starts n threads at the process's priority lowered by increment
// (1 to Max). A thread's priority cannot be raised back without privilege,
// so each thread stays locked to its goroutine and exits with it (Close).
func New(n, increment int) (*Pool, error) {
	if n < 1 {
		return nil, fmt.Errorf("nice: %d threads: want at least 1", n)
	}
	if increment < 1 || increment > Max {
		return nil, fmt.Errorf("nice: increment %d: want 1 to %d", increment, Max)
	}
	p := &Pool{work: make(chan job)}
	started := make(chan error, n)
	for range n {
		go p.thread(increment, started)
	}
	var err error
	for range n {
		if e := <-started; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Pool) thread(increment int, started chan<- error) {
	// Never unlocked: the thread ends with this goroutine, and its lowered
	// priority with it, instead of going back to the Go scheduler.
	runtime.LockOSThread()
	if mainThread() {
		// The main thread never ends (Go parks it when its goroutine exits
		// locked), so it would keep the lowered priority after Close. The
		// goroutine started here cannot run on it while it is locked.
		go p.thread(increment, started)
		runtime.UnlockOSThread()
		return
	}
	if err := lower(increment); err != nil {
		started <- fmt.Errorf("nice: lower a thread's priority by %d: %w", increment, err)
		return
	}
	started <- nil
	for j := range p.work {
		j.done <- run(j.f)
	}
}

func run(f func()) (panicked any) {
	defer func() { panicked = recover() }()
	f()
	return nil
}

// Do runs f on one of the pool's threads, waiting for a free one, and
// returns when f does. A panic in f is raised again in the caller.
func (p *Pool) Do(f func()) {
	j := job{f: f, done: make(chan any, 1)}
	p.work <- j
	if v := <-j.done; v != nil {
		panic(v)
	}
}

// Close ends the threads once their current work is done. Do must not be
// called after Close.
func (p *Pool) Close() {
	close(p.work)
}
