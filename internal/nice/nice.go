package nice

import (
	"fmt"
	"runtime"
	"sync"
)

// Max is the largest increment: Linux's nice values end at 19.
const Max = 19

// idle holds the lowered threads no pool is using, by increment, for the
// next pool of that level. OS threads belong to the process, and so does
// this list. A thread that took a lowered priority is never ended: ending
// a thread Go had used for other goroutines before would kill any child
// process started from it with a parent-death signal (exec.Cmd's
// Pdeathsig fires when the starting thread exits, not the process).
var idle = struct {
	sync.Mutex
	byIncrement map[int][]*thread
}{byIncrement: make(map[int][]*thread)}

// thread is one OS thread at a lowered priority, running what is sent on
// work, for the rest of the process.
type thread struct {
	work chan job
}

type job struct {
	f    func()
	done chan any // the panic f raised, or nil
}

// Pool is a set of OS threads, each at the process's nice value plus an
// increment, that run the functions given to Do one at a time each.
type Pool struct {
	increment int
	n         int
	free      chan *thread
}

// New returns a pool of n threads at the process's priority lowered by
// increment (1 to Max): threads an earlier pool of that level gave back,
// and new ones for the rest.
func New(n, increment int) (*Pool, error) {
	if n < 1 {
		return nil, fmt.Errorf("nice: %d threads: want at least 1", n)
	}
	if increment < 1 || increment > Max {
		return nil, fmt.Errorf("nice: increment %d: want 1 to %d", increment, Max)
	}
	idle.Lock()
	have := idle.byIncrement[increment]
	reused := have[len(have)-min(n, len(have)):]
	idle.byIncrement[increment] = have[:len(have)-len(reused)]
	idle.Unlock()
	p := &Pool{increment: increment, n: n, free: make(chan *thread, n)}
	for _, t := range reused {
		p.free <- t
	}
	for range n - len(reused) {
		t, err := start(increment)
		if err != nil {
			p.giveBack(len(p.free))
			return nil, err
		}
		p.free <- t
	}
	return p, nil
}

// start makes a new lowered thread.
func start(increment int) (*thread, error) {
	t := &thread{work: make(chan job)}
	started := make(chan error, 1)
	go t.run(increment, started)
	if err := <-started; err != nil {
		return nil, err
	}
	return t, nil
}

func (t *thread) run(increment int, started chan<- error) {
	runtime.LockOSThread()
	if mainThread() {
		// Not the main thread, which the rest of the process would then
		// share with a lowered priority. The goroutine started here cannot
		// run on it while it is locked.
		go t.run(increment, started)
		runtime.UnlockOSThread()
		return
	}
	if err := lower(increment); err != nil {
		runtime.UnlockOSThread() // its priority is unchanged
		started <- fmt.Errorf("nice: lower a thread's priority by %d: %w", increment, err)
		return
	}
	started <- nil
	// Locked for good: the priority cannot be raised back without
	// privilege, so the thread never returns to the Go scheduler, and it
	// never ends (idle says why).
	for j := range t.work {
		j.done <- call(j.f)
	}
}

func call(f func()) (panicked any) {
	defer func() { panicked = recover() }()
	f()
	return nil
}

// Do runs f on one of the pool's threads, waiting for a free one, and
// returns when f does. A panic in f is raised again in the caller.
func (p *Pool) Do(f func()) {
	t := <-p.free
	j := job{f: f, done: make(chan any, 1)}
	t.work <- j
	v := <-j.done
	p.free <- t
	if v != nil {
		panic(v)
	}
}

// Close waits for the functions running on the pool and gives its threads
// back for the next pool of the same level. Call it once, and Do no more.
func (p *Pool) Close() {
	p.giveBack(p.n)
}

func (p *Pool) giveBack(n int) {
	ts := make([]*thread, 0, n)
	for range n {
		ts = append(ts, <-p.free)
	}
	idle.Lock()
	idle.byIncrement[p.increment] = append(idle.byIncrement[p.increment], ts...)
	idle.Unlock()
}
