// Package e2e holds eyeflow's whole-pipeline tests: the promise that every
// uploaded image gets exactly one prediction per environment, or a dead letter
// saying why, checked while servers, processors and the object store fail.
// The package has no code of its own; see its tests.
package e2e
