//go:build unix

package connlimit

import "syscall"

// RaiseFileLimit raises the soft limit on open files to the hard limit
// (Go's runtime does so at start on most systems; this makes sure) and
// returns the limit in force, 0 if unknown.
func RaiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			lim = want
		}
	}
	return uint64(lim.Cur)
}
