package server

import (
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/internal/connlimit"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

// opsMaxConnections bounds the ops listener (probes, scrapes, previews).
const opsMaxConnections = 256

// connMetrics counts what the connection limits do, per listener.
type connMetrics struct {
	reg       prometheus.Registerer
	refused   *prometheus.CounterVec
	reclaimed *prometheus.CounterVec
}

func newConnMetrics(m *telemetry.Metrics) *connMetrics {
	c := &connMetrics{
		reg: m.Registerer(),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_connections_refused_total", Help: "Connections closed at accept by a limit, by listener and reason (total, client).",
		}, []string{"listener", "reason"}),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_connections_reclaimed_total", Help: "Idle connections closed to make room for new ones, by listener.",
		}, []string{"listener"}),
	}
	m.Registerer().MustRegister(c.refused, c.reclaimed)
	return c
}

// limit wraps ln with o's limits, reported under name.
func (c *connMetrics) limit(ln net.Listener, name string, o connlimit.Options) *connlimit.Listener {
	reclaimed := c.reclaimed.WithLabelValues(name)
	o.Refused = func(reason string) { c.refused.WithLabelValues(name, reason).Inc() }
	o.Reclaimed = reclaimed.Inc
	l := connlimit.New(ln, o)
	c.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gatehouse_connections_open", Help: "Client connections held, by listener (main, ops, http).",
		ConstLabels: prometheus.Labels{"listener": name},
	}, func() float64 { return float64(l.Open()) }))
	return l
}
