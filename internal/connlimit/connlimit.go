// Package connlimit bounds the connections a listener holds, in all and
// per client address, so that one client's idle keep-alive connections
// cannot use up the process's file descriptors (and with them the ops
// listener, the store and upstream connections).
//
// A connection over a limit is accepted and closed at once: the kernel's
// backlog never fills, and the client learns at once. When the listener
// is full, the connection idle the longest (between requests, as
// http.Server's ConnState reports) is closed to make room, the way nginx
// reuses idle connections: clients holding many idle connections cannot
// starve new ones.
package connlimit

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Options configure a Listener.
type Options struct {
	// Max is the most connections held at once (0: no limit).
	Max int
	// PerClient is the most connections from one client address, IPv6 by
	// /64 (0: no limit). Exempt reports addresses it does not apply to
	// (trusted proxies, whose connections carry many clients).
	PerClient int
	Exempt    func(netip.Addr) bool
	// Refused is called for each connection closed at accept, with the
	// reason ("total" or "client"); Reclaimed for each idle connection
	// closed to make room. Both may be nil.
	Refused   func(reason string)
	Reclaimed func()
}

// Listener is a net.Listener with limits. Pass its ConnState to the
// http.Server serving it, so that it knows which connections are idle.
type Listener struct {
	net.Listener
	o Options

	mu       sync.Mutex
	total    int
	byClient map[netip.Prefix]int
	idle     *list.List // of net.Conn, longest idle first
	idleAt   map[net.Conn]*list.Element
	open     atomic.Int64
}

// New wraps ln.
func New(ln net.Listener, o Options) *Listener {
	return &Listener{Listener: ln, o: o, byClient: map[netip.Prefix]int{}, idle: list.New(), idleAt: map[net.Conn]*list.Element{}}
}

// Open is the number of connections held now.
func (l *Listener) Open() int64 { return l.open.Load() }

// Accept returns the next connection within the limits.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, limited := l.clientKey(c)
		var reclaim net.Conn
		l.mu.Lock()
		switch {
		case limited && l.o.PerClient > 0 && l.byClient[key] >= l.o.PerClient:
			l.mu.Unlock()
			l.refuse(c, "client")
			continue
		case l.o.Max > 0 && l.total >= l.o.Max:
			front := l.idle.Front()
			if front == nil {
				l.mu.Unlock()
				l.refuse(c, "total")
				continue
			}
			reclaim = front.Value.(net.Conn)
			l.idle.Remove(front)
			delete(l.idleAt, reclaim)
		}
		// Counted now, so that the reclaimed connection's slot (freed
		// when it closes) is this one's: the total may be one over Max
		// for that moment.
		l.total++
		if limited {
			l.byClient[key]++
		}
		l.mu.Unlock()
		if reclaim != nil {
			_ = reclaim.Close()
			if l.o.Reclaimed != nil {
				l.o.Reclaimed()
			}
		}
		l.open.Add(1)
		return &conn{Conn: c, l: l, key: key, limited: limited}, nil
	}
}

func (l *Listener) refuse(c net.Conn, reason string) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a reset: no TIME_WAIT kept for a refused connection
	}
	_ = c.Close()
	if l.o.Refused != nil {
		l.o.Refused(reason)
	}
}

// clientKey is the client's address (IPv6: its /64), and whether the
// per-client limit applies to it.
func (l *Listener) clientKey(c net.Conn) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Prefix{}, false
	}
	a := ap.Addr().Unmap()
	if l.o.Exempt != nil && l.o.Exempt(a) {
		return netip.Prefix{}, false
	}
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p, true
}

// ConnState tracks idle connections (new ones that sent nothing yet, and
// kept-alive ones between requests); set it as http.Server.ConnState. The
// conn it gets may wrap this listener's (a *tls.Conn): closing it closes
// ours.
func (l *Listener) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s == http.StateIdle || s == http.StateNew {
		if _, ok := l.idleAt[c]; !ok {
			l.idleAt[c] = l.idle.PushBack(c)
		}
		return
	}
	if e, ok := l.idleAt[c]; ok {
		l.idle.Remove(e)
		delete(l.idleAt, c)
	}
}

type conn struct {
	net.Conn
	l       *Listener
	key     netip.Prefix
	limited bool
	once    sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		l := c.l
		l.mu.Lock()
		l.total--
		if c.limited {
			if l.byClient[c.key]--; l.byClient[c.key] <= 0 {
				delete(l.byClient, c.key)
			}
		}
		l.mu.Unlock()
		l.open.Add(-1)
	})
	return err
}

// DefaultMax is the connection limit for a file limit of nofile: half of
// it, leaving the rest to upstream connections, the store, the ops
// listener and certificates, and at most 100,000 (about 1.5 GiB of idle
// connections; see docs/performance.md).
func DefaultMax(nofile uint64) int {
	if nofile == 0 || nofile/2 > 100_000 {
		return 100_000
	}
	return int(nofile / 2)
}
