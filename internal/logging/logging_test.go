package logging

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestBufferingAndFlush(t *testing.T) {
	var out syncBuf
	l := New(Options{Level: "info"}, &out)
	l.Info("request", "path", "/a")
	if out.String() != "" {
		t.Fatal("info line written unbuffered")
	}
	l.Warn("trouble")
	if s := out.String(); !strings.Contains(s, `"path":"/a"`) || !strings.Contains(s, "trouble") {
		t.Fatalf("warn did not flush: %q", s)
	}
	l.Info("later")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(out.String(), "later") {
		if time.Now().After(deadline) {
			t.Fatal("periodic flush did not happen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.Debug("hidden")
	l.Info("last")
	cancel()
	<-done
	if s := out.String(); !strings.Contains(s, "last") || strings.Contains(s, "hidden") {
		t.Fatalf("final flush or level filter wrong: %q", s)
	}
}

func TestTextFormat(t *testing.T) {
	var out syncBuf
	l := New(Options{Format: "text", Level: "debug"}, &out)
	l.Debug("x", "k", "v")
	l.Close()
	if !strings.Contains(out.String(), "level=DEBUG msg=x k=v") {
		t.Fatalf("text output: %q", out.String())
	}
}
