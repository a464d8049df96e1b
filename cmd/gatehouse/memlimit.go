package main

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of the container's memory limit given to
// Go as its soft limit: the rest is for what the runtime does not count
// (thread stacks of cgo, the binary, page cache of Badger's files).
const memoryLimitShare = 0.9

// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the
// container's (cgroup) memory limit, unless GOMEMLIMIT is set: the
// collector then runs before the heap's headroom (up to twice what is
// live, GOGC=100) takes the container past its limit, as many idle
// connections and background garbage could otherwise. Outside a limited
// cgroup it does nothing.
func setMemoryLimit(log *slog.Logger) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return
	}
	limit, ok := cgroupMemoryLimit("/")
	if !ok {
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("gatehouse: Go memory limit set from the container's", "container_limit_bytes", limit, "soft_limit_bytes", soft)
}

// noLimit: cgroup v1 reports an unlimited group as a huge number.
const noLimit = 1 << 60

// cgroupMemoryLimit is the smallest memory limit on the path of this
// process's cgroup (v2: memory.max; v1: memory.limit_in_bytes), files
// read under root ("/" but in tests).
func cgroupMemoryLimit(root string) (int64, bool) {
	data, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, false
	}
	best := int64(0)
	consider := func(dir, file string) {
		// The group and its ancestors up to the hierarchy's root: a
		// parent's limit binds too.
		for {
			if n, ok := readLimit(filepath.Join(dir, file)); ok && (best == 0 || n < best) {
				best = n
			}
			if filepath.Clean(dir) == filepath.Clean(filepath.Join(root, "sys/fs/cgroup")) || dir == "/" || dir == "." {
				return
			}
			parent := filepath.Dir(dir)
			if !strings.HasPrefix(parent, filepath.Join(root, "sys/fs/cgroup")) {
				return
			}
			dir = parent
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || strings.Contains(parts[2], "..") {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "": // v2
			consider(filepath.Join(root, "sys/fs/cgroup", parts[2]), "memory.max")
		case hasController(parts[1], "memory"): // v1
			consider(filepath.Join(root, "sys/fs/cgroup/memory", parts[2]), "memory.limit_in_bytes")
		}
	}
	return best, best > 0
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads a limit file: a number of bytes, or "max" (none).
func readLimit(path string) (int64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || n <= 0 || n >= noLimit {
		return 0, false
	}
	return n, true
}
