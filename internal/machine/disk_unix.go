//go:build linux || darwin

package machine

import "syscall"

// DiskFree is the bytes available to this user on the file system holding
// path; 0 when it cannot be read.
func DiskFree(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * int64(st.Bsize) //nolint:unconvert // field types differ per OS
}
