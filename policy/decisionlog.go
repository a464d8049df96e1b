package policy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DecisionLog records every deny and a sample of allows as one JSON object
// per line: decision id, policy version, the input with secrets redacted
// (it never holds cookies or credentials; query values and the Referer's
// query, which may carry tokens, are replaced), the result and latency. It
// goes to the logger and, if set, a file (JSON Lines).
type DecisionLog struct {
	log         *slog.Logger
	sampleAllow float64
	mu          sync.Mutex
	file        io.Writer
	decisions   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
}

// NewDecisionLog logs to log and, if file is not nil, to file. A fraction
// sampleAllow (0..1) of allows is logged.
func NewDecisionLog(log *slog.Logger, file io.Writer, sampleAllow float64, reg prometheus.Registerer) *DecisionLog {
	d := &DecisionLog{
		log: log, file: file, sampleAllow: sampleAllow,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_policy_decisions_total",
			Help: "Policy decisions by route and outcome (allow, deny, error).",
		}, []string{"route", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_policy_eval_seconds",
			Help:    "Time to evaluate every policy layer of a request.",
			Buckets: []float64{.000005, .00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .01, .1},
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(d.decisions, d.latency)
	}
	return d
}

type entry struct {
	Time      time.Time `json:"time"`
	ID        string    `json:"decision_id"`
	Version   string    `json:"policy_version"`
	Allow     bool      `json:"allow"`
	Reasons   []string  `json:"reasons,omitempty"`
	Headers   []string  `json:"headers,omitempty"` // names only
	Error     string    `json:"error,omitempty"`
	LatencyUS float64   `json:"latency_us"`
	Input     *Input    `json:"input"`
}

// Record counts a decision and logs it if it is a deny or sampled.
func (d *DecisionLog) Record(ctx context.Context, in *Input, dec *Decision, took time.Duration) {
	if d == nil {
		return
	}
	outcome := "allow"
	switch {
	case dec.Err != nil:
		outcome = "error"
	case !dec.Allow:
		outcome = "deny"
	}
	d.decisions.WithLabelValues(in.Route.ID, outcome).Inc()
	d.latency.WithLabelValues(in.Route.ID).Observe(took.Seconds())
	if dec.Allow && (d.sampleAllow <= 0 || mrand.Float64() >= d.sampleAllow) {
		return
	}
	dec.ID = rand.Text()[:16]
	e := entry{Time: time.Now().UTC(), ID: dec.ID, Version: dec.Version, Allow: dec.Allow, Reasons: dec.Reasons,
		LatencyUS: float64(took.Nanoseconds()) / 1000, Input: redacted(in)}
	if dec.Err != nil {
		e.Error = dec.Err.Error()
	}
	for k := range dec.Headers {
		e.Headers = append(e.Headers, k)
	}
	d.log.LogAttrs(ctx, slog.LevelInfo, "policy: decision", slog.Any("decision", e))
	if d.file != nil {
		b, err := json.Marshal(e)
		if err == nil {
			d.mu.Lock()
			_, err = d.file.Write(append(b, '\n'))
			d.mu.Unlock()
		}
		if err != nil {
			d.log.Error("policy: decision log write failed", "err", err)
		}
	}
}

// Error logs an evaluation failure (which denied the request).
func (d *DecisionLog) Error(ctx context.Context, layer string, err error) {
	if d == nil {
		return
	}
	d.log.LogAttrs(ctx, slog.LevelError, "policy: evaluation failed; denying", slog.String("layer", layer), slog.String("err", err.Error()))
}

// redacted is a copy of in fit for logs: lists and maps as policies see
// them ([] and {}), query values and the Referer's query and fragment
// replaced, since links carry tokens (password resets, OAuth codes).
func redacted(in *Input) *Input {
	c := *in
	c.Normalize()
	if len(in.Request.Query) > 0 {
		q := make(map[string][]string, len(in.Request.Query))
		for k, vs := range in.Request.Query {
			q[k] = make([]string, len(vs))
			for i := range vs {
				q[k][i] = "[redacted]"
			}
		}
		c.Request.Query = q
	}
	if ref, ok := in.Request.Headers["referer"]; ok {
		h := make(map[string]string, len(in.Request.Headers))
		for k, v := range in.Request.Headers {
			h[k] = v
		}
		if u, err := url.Parse(ref); err == nil {
			u.RawQuery, u.Fragment, u.User = "", "", nil
			h["referer"] = u.String()
		} else {
			h["referer"] = "[redacted]"
		}
		c.Request.Headers = h
	}
	return &c
}
