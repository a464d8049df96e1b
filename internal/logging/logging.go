// Package logging builds Gatehouse's slog logger. Request logs are one
// line per request, so writes are buffered and flushed every 100ms (and at
// once for warnings and errors, and on Close): a write syscall per request
// would cost more than the rest of the hot path.
package logging

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Options select level and format.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // json (default) or text
}

// Logger is a slog.Logger over a buffered writer.
type Logger struct {
	*slog.Logger
	w *bufWriter
}

// New returns a logger writing to w. Call Run to flush periodically and
// Close to flush at exit.
func New(o Options, w io.Writer) *Logger {
	var lvl slog.Level
	if o.Level != "" {
		_ = lvl.UnmarshalText([]byte(o.Level))
	}
	bw := &bufWriter{b: bufio.NewWriterSize(w, 64<<10)}
	ho := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	if strings.EqualFold(o.Format, "text") {
		h = slog.NewTextHandler(bw, ho)
	} else {
		h = slog.NewJSONHandler(bw, ho)
	}
	return &Logger{Logger: slog.New(&flushOnWarn{Handler: h, w: bw}), w: bw}
}

// Run flushes every 100ms until ctx ends, then flushes once more.
func (l *Logger) Run(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.w.Flush()
			return
		case <-t.C:
			l.w.Flush()
		}
	}
}

// Close flushes buffered lines.
func (l *Logger) Close() { l.w.Flush() }

type bufWriter struct {
	mu sync.Mutex
	b  *bufio.Writer
}

func (w *bufWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *bufWriter) Flush() {
	w.mu.Lock()
	_ = w.b.Flush()
	w.mu.Unlock()
}

type flushOnWarn struct {
	slog.Handler
	w *bufWriter
}

func (h *flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.w.Flush()
	}
	return err
}

func (h *flushOnWarn) WithAttrs(as []slog.Attr) slog.Handler {
	return &flushOnWarn{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *flushOnWarn) WithGroup(name string) slog.Handler {
	return &flushOnWarn{Handler: h.Handler.WithGroup(name), w: h.w}
}
