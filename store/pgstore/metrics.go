package pgstore

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's and the queries' (Options.Registerer).
type metrics struct {
	queries *prometheus.HistogramVec
}

// queryTracer times every statement by its verb and outcome.
type queryTracer struct{ m *metrics }

type startKey struct{}

type queryStart struct {
	at   time.Time
	verb string
}

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	verb, _, _ := strings.Cut(strings.TrimSpace(d.SQL), " ")
	verb = strings.ToLower(verb)
	switch verb {
	case "select", "insert", "update", "delete", "with":
	default:
		verb = "other"
	}
	return context.WithValue(ctx, startKey{}, queryStart{at: time.Now(), verb: verb})
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	st, ok := ctx.Value(startKey{}).(queryStart)
	if !ok {
		return
	}
	outcome := "ok"
	if d.Err != nil {
		outcome = "error"
	}
	q.m.queries.WithLabelValues(st.verb, outcome).Observe(time.Since(st.at).Seconds())
}

// register adds the pool's gauges and the query histogram to r.
func (s *Store) register(r prometheus.Registerer) *metrics {
	m := &metrics{queries: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gatehouse_store_query_seconds",
		Help:    "PostgreSQL statements by verb and outcome.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"verb", "outcome"})}
	if r == nil {
		return m
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	for _, c := range []prometheus.Collector{
		m.queries,
		gauge("gatehouse_store_pool_connections_acquired", "Connections in use.", func() float64 { return float64(s.pool.Stat().AcquiredConns()) }),
		gauge("gatehouse_store_pool_connections_idle", "Idle connections.", func() float64 { return float64(s.pool.Stat().IdleConns()) }),
		gauge("gatehouse_store_pool_connections_max", "The pool's size (store.postgres.max_conns).", func() float64 { return float64(s.pool.Stat().MaxConns()) }),
		counter("gatehouse_store_pool_acquire_waits_total", "Acquires that had to wait for a connection.", func() float64 { return float64(s.pool.Stat().EmptyAcquireCount()) }),
		counter("gatehouse_store_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", func() float64 { return s.pool.Stat().AcquireDuration().Seconds() }),
		gauge("gatehouse_store_clock_skew_seconds", "This node's clock minus the database's, as last measured (every minute); keep it well under a second.", func() float64 {
			return time.Duration(s.skew.Load()).Seconds()
		}),
		gauge("gatehouse_store_listening", "1 while the node listens for other nodes' changes.", func() float64 {
			if s.listening.Load() {
				return 1
			}
			return 0
		}),
	} {
		_ = r.Register(c)
	}
	return m
}
