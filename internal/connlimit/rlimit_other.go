//go:build !unix

package connlimit

// RaiseFileLimit is not available here: 0, unknown.
func RaiseFileLimit() uint64 { return 0 }
