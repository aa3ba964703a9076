//go:build !race

package splitter_test

const raceEnabled = false
