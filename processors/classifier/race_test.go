//go:build race

package classifier

// raceEnabled skips the plain-Go DenseNet121 reference, which the race
// detector slows to minutes.
const raceEnabled = true
