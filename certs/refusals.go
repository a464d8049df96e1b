package certs

import (
	"bytes"
	"log"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// RefusalLog reports TLS handshakes refused for names Gatehouse does not
// serve. Scanners probe with random names, IP addresses or no SNI at all,
// many a second: one warning per probe would bury everything else. The
// first refusal after a quiet interval is logged at once (an operator
// trying a name sees it); later ones are counted and logged once the
// interval has passed, with a few of their names.
type RefusalLog struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	n       int
	samples []string
	last    time.Time   // when the last line was written
	timer   *time.Timer // writes the pending count when the interval ends
	closed  bool
}

// maxRefusalSamples bounds the names one line carries.
const maxRefusalSamples = 5

// NewRefusalLog logs refusals to log, at most one line every interval.
func NewRefusalLog(log *slog.Logger, every time.Duration) *RefusalLog {
	return &RefusalLog{log: log, every: every}
}

// Refused counts a handshake refused for sni ("" when the client sent
// none). A nil RefusalLog counts nothing.
func (r *RefusalLog) Refused(sni string) {
	if r == nil {
		return
	}
	if sni == "" {
		sni = "(no SNI)"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.n++
	if len(r.samples) < maxRefusalSamples && !slices.Contains(r.samples, sni) {
		r.samples = append(r.samples, sni)
	}
	if r.timer != nil {
		return // a line is due when the interval ends
	}
	if wait := r.every - time.Since(r.last); wait > 0 {
		r.timer = time.AfterFunc(wait, r.flush)
		return
	}
	r.writeLocked()
}

func (r *RefusalLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	r.writeLocked()
}

func (r *RefusalLog) writeLocked() {
	if r.n == 0 {
		return
	}
	r.log.Warn("certs: refused TLS handshakes for names not served", "count", r.n, "names", r.samples, "interval", r.every.String())
	r.n, r.samples, r.last = 0, nil, time.Now()
}

// Close writes what is pending and stops counting.
func (r *RefusalLog) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.writeLocked()
	r.closed = true
}

// TLSErrorLog is the TLS listener's error log, at warning level, without
// the handshakes refused for names not served: RefusalLog reports
// those, with their names, at most once a minute.
func TLSErrorLog(logger *slog.Logger) *log.Logger {
	warn := slog.NewLogLogger(logger.Handler(), slog.LevelWarn).Writer()
	refused := []byte(ErrNotAllowed.Error())
	return log.New(writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte("TLS handshake error")) && bytes.HasSuffix(bytes.TrimSpace(p), refused) {
			return len(p), nil
		}
		return warn.Write(p)
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
