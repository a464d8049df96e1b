package connlimit

import (
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the connection limits do, per listener.
type Metrics struct {
	reg       prometheus.Registerer
	refused   *prometheus.CounterVec
	reclaimed *prometheus.CounterVec
}

// NewMetrics registers the connection metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := &Metrics{
		reg: reg,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_connections_refused_total", Help: "Connections closed at accept by a limit, by listener and reason (total, client).",
		}, []string{"listener", "reason"}),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_connections_reclaimed_total", Help: "Idle connections closed to make room for new ones, by listener.",
		}, []string{"listener"}),
	}
	reg.MustRegister(c.refused, c.reclaimed)
	return c
}

// Limit wraps ln with o's limits, reported under name.
func (c *Metrics) Limit(ln net.Listener, name string, o Options) *Listener {
	reclaimed := c.reclaimed.WithLabelValues(name)
	o.Refused = func(reason string) { c.refused.WithLabelValues(name, reason).Inc() }
	o.Reclaimed = reclaimed.Inc
	l := New(ln, o)
	c.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gatehouse_connections_open", Help: "Client connections held, by listener (main, ops, http).",
		ConstLabels: prometheus.Labels{"listener": name},
	}, func() float64 { return float64(l.Open()) }))
	return l
}
