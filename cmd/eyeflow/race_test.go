//go:build race

package main

// raceEnabled: tests that start ONNX Runtime's WebGPU provider run without
// the race detector (Dawn's start-up hangs under it).
const raceEnabled = true
