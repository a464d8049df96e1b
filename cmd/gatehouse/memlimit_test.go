package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The container's memory limit, as cgroup v1 and v2 give it, at the
// process's group or an ancestor's; "max", v1's huge "unlimited", junk
// and missing files are no limit.
func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cgroup string
		files  map[string]string // under sys/fs/cgroup
		want   int64
	}{
		{"v2 unlimited", "0::/\n", map[string]string{"memory.max": "max\n"}, 0},
		{"v2 at the group", "0::/app\n", map[string]string{"app/memory.max": "1073741824\n"}, 1 << 30},
		{"v2 at a parent", "0::/kubepods/pod1/c1\n", map[string]string{"kubepods/pod1/c1/memory.max": "max\n", "kubepods/pod1/memory.max": "536870912\n"}, 512 << 20},
		{"v2 the smaller of two", "0::/a/b\n", map[string]string{"a/b/memory.max": "900000000\n", "a/memory.max": "800000000\n"}, 800000000},
		{"v1 memory controller", "4:memory:/docker/abc\n3:cpu:/x\n", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20},
		{"v1 with other controllers", "4:cpuacct,memory:/g\n", map[string]string{"memory/g/memory.limit_in_bytes": "268435456"}, 256 << 20},
		{"v1 unlimited", "4:memory:/x\n", map[string]string{"memory/x/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"junk", "0::/app\n", map[string]string{"app/memory.max": "lots\n"}, 0},
		{"zero", "0::/app\n", map[string]string{"app/memory.max": "0\n"}, 0},
		{"no files", "0::/app\n", nil, 0},
		{"escaping path", "0::/../../etc\n", map[string]string{"memory.max": "1000"}, 0},
		{"malformed line", "garbage\n", map[string]string{"memory.max": "1000"}, 0},
		{"v1 and v2 both", "4:memory:/g\n0::/app\n", map[string]string{"memory/g/memory.limit_in_bytes": "300000000", "app/memory.max": "200000000"}, 200000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write := func(rel, body string) {
				p := filepath.Join(root, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write("proc/self/cgroup", tc.cgroup)
			for rel, body := range tc.files {
				write(filepath.Join("sys/fs/cgroup", rel), body)
			}
			got, ok := cgroupMemoryLimit(root)
			if got != tc.want || ok != (tc.want > 0) {
				t.Fatalf("limit %d, %v; want %d", got, ok, tc.want)
			}
		})
	}
	if _, ok := cgroupMemoryLimit(t.TempDir()); ok {
		t.Error("no /proc/self/cgroup: a limit")
	}
}
