//go:build !linux && !darwin

package machine

// DiskFree is 0 (unknown) on this OS.
func DiskFree(string) int64 { return 0 }
