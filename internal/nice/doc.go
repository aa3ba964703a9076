// Package nice runs native compute (ONNX Runtime's session runs on the CPU)
// on OS threads of lower scheduling priority.
//
// Model runs are batch work that fills every core for hundreds of
// milliseconds. On the same cores, `eyeflow up` also runs the NATS server,
// the I/O stages (each message a few round trips to it) and the HTTP
// endpoints, and Linux shares a core equally among runnable threads: a round
// trip that should take 0.2 ms waits for a time slice behind the model.
// Lowering the model threads' priority (nice) lets that work go first
// without taking cores from the model when nothing else needs them
// (BENCHMARKS.md, "Splitter in the pipeline").
//
// The threads are kept for the process's life and handed from pool to pool
// (a model swap closes one session's pool and opens the next): a Go thread
// that ends takes down the child processes started from it with a
// parent-death signal, which eyeflow's own tests and the torch engine use.
//
// Only work that leaves the Go scheduler belongs here (a cgo call releases
// its P): a Go goroutine on a thread the kernel holds back would keep its P
// from the goroutines waiting for one.
package nice
