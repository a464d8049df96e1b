package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// The throwaway cluster answers, and each test gets its own database.
func TestCluster(t *testing.T) {
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatal("two tests share a database")
	}
	conn, err := pgx.Connect(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(context.Background(), "SHOW server_version").Scan(&v); err != nil || v == "" {
		t.Fatalf("version %q: %v", v, err)
	}
}

// A cluster folder whose owner died is removed at the next start; one
// whose owner lives is kept.
func TestReapOrphans(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true(1)")
	}
	orphan, err := os.MkdirTemp("", "gatehouse-pg-")
	if err != nil {
		t.Fatal(err)
	}
	live, err := os.MkdirTemp("", "gatehouse-pg-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(live)
	_ = os.WriteFile(filepath.Join(orphan, "owner"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644)
	_ = os.WriteFile(filepath.Join(live, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	reapOrphans(binDir())
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		os.RemoveAll(orphan)
		t.Fatalf("the orphan's folder is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("a live cluster's folder was removed: %v", err)
	}
}
