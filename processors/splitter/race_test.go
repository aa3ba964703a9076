//go:build race

package splitter_test

// raceEnabled shrinks the statistical sweeps, which only repeat pure hashing
// (nothing concurrent for the race detector to watch) at ten times the cost.
const raceEnabled = true
