package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/netguard"
	"github.com/gatehouse/gatehouse/internal/webhooksig"
	"github.com/gatehouse/gatehouse/store"
)

// Audit streaming: every org may register a webhook (its SIEM) and the
// deployment one platform-wide sink; both get their events from the audit
// chains themselves. The chain is the durable outbox: a sink's cursor per
// chain (the last sequence number it acknowledged) is stored, advanced
// only on a 2xx, so a receiver that is down loses nothing and gets every
// event in chain order when it is back. Delivery runs in the background,
// on one node at a time, never on the request path. Messages follow
// Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature).

// Sink is one destination of audit events.
type Sink struct {
	// Key names the sink's cursors; a new registration gets a new key.
	Key string
	// OrgID is the org whose chain it gets ("": every chain).
	OrgID  string
	URL    string
	Secret string
}

// StreamOptions wire a Streamer.
type StreamOptions struct {
	Store store.Store
	// Platform is the deployment's sink for every org's events (nil: none).
	Platform *Sink
	// AllowPrivateNetworks lets orgs' webhooks reach loopback and private
	// addresses (a SIEM on the operator's own network; tests). Off, an
	// org admin cannot make Gatehouse call into its network.
	AllowPrivateNetworks bool
	// Node owns the delivery lock while it delivers.
	Node       string
	Logger     *slog.Logger
	Now        func() time.Time
	Registerer prometheus.Registerer
	// Interval between delivery rounds (default 1s).
	Interval time.Duration
}

// Streamer delivers audit events to sinks.
type Streamer struct {
	o             StreamOptions
	orgClient     *http.Client
	trustedClient *http.Client
	mu            sync.Mutex
	state         map[string]*sinkState // by sink key
	delivered     *prometheus.CounterVec
	failed        *prometheus.CounterVec
}

// sinkState is a sink's delivery health, kept per sink.
type sinkState struct {
	Failures      int       `json:"failures"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
}

// Delivery bounds.
const (
	streamBatch      = 100
	streamMaxBackoff = 5 * time.Minute
	streamLock       = "audit-stream"
	streamLockTTL    = 30 * time.Second
)

// NewStreamer builds a Streamer.
func NewStreamer(o StreamOptions) *Streamer {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	s := &Streamer{o: o, state: map[string]*sinkState{},
		orgClient: webhookClient(!o.AllowPrivateNetworks), trustedClient: webhookClient(false),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_audit_webhook_events_total",
			Help: "Audit events delivered to webhooks, by sink kind (org or platform)."}, []string{"sink"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_audit_webhook_failures_total",
			Help: "Failed webhook deliveries (retried with back-off), by sink kind."}, []string{"sink"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(s.delivered, s.failed)
	}
	return s
}

// Run delivers until ctx ends.
func (s *Streamer) Run(ctx context.Context) {
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	defer func() {
		// Let another node take over at once.
		_ = s.o.Store.ReleaseLock(context.WithoutCancel(ctx), streamLock, s.o.Node)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Tick(ctx)
		}
	}
}

// Tick runs one delivery round, if this node holds the delivery lock.
func (s *Streamer) Tick(ctx context.Context) {
	ok, err := s.o.Store.AcquireLock(ctx, streamLock, s.o.Node, streamLockTTL)
	if err != nil || !ok {
		return
	}
	sinks, err := s.sinks(ctx)
	if err != nil {
		s.o.Logger.Warn("audit stream: reading sinks failed", "err", err)
		return
	}
	for _, sk := range sinks {
		if ctx.Err() != nil {
			return
		}
		st := s.stateOf(sk.Key)
		if st.NextAttemptAt.After(s.o.Now()) {
			continue
		}
		s.deliver(ctx, sk)
	}
}

// sinks are the platform's and every org's with a webhook.
func (s *Streamer) sinks(ctx context.Context) ([]Sink, error) {
	var out []Sink
	if s.o.Platform != nil {
		out = append(out, *s.o.Platform)
	}
	orgs, err := s.o.Store.ListOrgs(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range orgs {
		if w := o.AuditWebhook; w != nil {
			out = append(out, Sink{Key: orgSinkKey(o.ID, *w), OrgID: o.ID, URL: w.URL, Secret: w.Secret})
		}
	}
	return out, nil
}

// orgSinkKey names one registration of an org's webhook.
func orgSinkKey(orgID string, w store.AuditWebhook) string {
	h := sha256.Sum256([]byte(w.URL + "\x00" + w.CreatedAt.UTC().Format(time.RFC3339Nano)))
	return "org-" + orgID + "-" + hex.EncodeToString(h[:6])
}

// PlatformSinkKey names the platform sink of url.
func PlatformSinkKey(url string) string {
	h := sha256.Sum256([]byte(url))
	return "platform-" + hex.EncodeToString(h[:6])
}

func cursorKey(sinkKey, orgID string) string {
	if orgID == "" {
		orgID = "_platform"
	}
	return "audit-stream/" + sinkKey + "/" + orgID
}

func statusKey(sinkKey string) string { return "audit-stream-status/" + sinkKey }

type cursor struct {
	Seq uint64 `json:"seq"`
}

func readCursor(ctx context.Context, st store.Store, sinkKey, orgID string) (uint64, error) {
	b, err := st.GetBlob(ctx, cursorKey(sinkKey, orgID))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var c cursor
	if err := json.Unmarshal(b.Value, &c); err != nil {
		return 0, fmt.Errorf("audit stream: cursor %s: %w", cursorKey(sinkKey, orgID), err)
	}
	return c.Seq, nil
}

func writeCursor(ctx context.Context, st store.Store, sinkKey, orgID string, seq uint64) error {
	b, _ := json.Marshal(cursor{Seq: seq})
	return st.PutBlob(ctx, cursorKey(sinkKey, orgID), b)
}

func (s *Streamer) stateOf(key string) *sinkState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state[key]
	if st == nil {
		st = &sinkState{}
		s.state[key] = st
	}
	return st
}

// deliver sends the sink what its chains hold past its cursors, a batch
// at a time, until it is caught up or a delivery fails.
func (s *Streamer) deliver(ctx context.Context, sk Sink) {
	heads, err := s.o.Store.AuditHeads(ctx)
	if err != nil {
		return
	}
	kind := "org"
	if sk.OrgID == "" {
		kind = "platform"
	}
	covered, err := chainsOf(ctx, s.o.Store, sk.OrgID)
	if err != nil {
		return
	}
	deadline := s.o.Now().Add(streamBudget)
	for _, h := range heads {
		if !covered(h.OrgID) {
			continue
		}
		for rounds := 0; rounds < 20; rounds++ { // fair to other sinks
			if s.o.Now().After(deadline) {
				return // a slow receiver waits for the next round, not everyone
			}
			// Still ours? (A round may outlast the lock's TTL.)
			if ok, err := s.o.Store.AcquireLock(ctx, streamLock, s.o.Node, streamLockTTL); err != nil || !ok {
				return
			}
			cur, err := readCursor(ctx, s.o.Store, sk.Key, h.OrgID)
			if err != nil {
				s.fail(ctx, sk, kind, err)
				return
			}
			if cur >= h.Seq {
				break
			}
			batch, err := s.batch(ctx, h.OrgID, cur)
			if err != nil || len(batch) == 0 {
				break
			}
			if err := s.post(ctx, sk, h.OrgID, batch); err != nil {
				s.fail(ctx, sk, kind, err)
				return
			}
			if err := writeCursor(ctx, s.o.Store, sk.Key, h.OrgID, batch[len(batch)-1].Seq); err != nil {
				s.fail(ctx, sk, kind, fmt.Errorf("saving the cursor: %w", err))
				return
			}
			s.delivered.WithLabelValues(kind).Add(float64(len(batch)))
			s.succeed(ctx, sk)
		}
	}
}

// streamBudget bounds one sink's share of a delivery round.
const streamBudget = 10 * time.Second

// chainsOf says which chains a sink of orgID gets: every one for the
// platform's (""), an org's own and its sub-orgs' for an org's webhook
// (its admins' scope).
func chainsOf(ctx context.Context, st store.Store, orgID string) (func(chain string) bool, error) {
	if orgID == "" {
		return func(string) bool { return true }, nil
	}
	orgs, err := st.ListOrgs(ctx)
	if err != nil {
		return nil, err
	}
	parent := map[string]string{}
	for _, o := range orgs {
		parent[o.ID] = o.ParentID
	}
	return func(id string) bool {
		for n := 0; id != "" && n < maxDepth; n++ {
			if id == orgID {
				return true
			}
			id = parent[id]
		}
		return false
	}, nil
}

var errBatchFull = errors.New("batch full")

func (s *Streamer) batch(ctx context.Context, orgID string, after uint64) ([]store.AuditEvent, error) {
	var out []store.AuditEvent
	err := s.o.Store.WalkAudit(ctx, orgID, after, func(e store.AuditEvent) error {
		out = append(out, e)
		if len(out) == streamBatch {
			return errBatchFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return nil, err
	}
	return out, nil
}

// StreamMessage is the body of one delivery.
type StreamMessage struct {
	Type string `json:"type"` // "gatehouse.audit.events"
	// OrgID is the chain the events are from ("" the platform's).
	OrgID  string             `json:"org_id"`
	Events []store.AuditEvent `json:"events"`
}

func (s *Streamer) post(ctx context.Context, sk Sink, orgID string, events []store.AuditEvent) error {
	body, err := json.Marshal(StreamMessage{Type: "gatehouse.audit.events", OrgID: orgID, Events: events})
	if err != nil {
		return err
	}
	// The same events always get the same id, so that a receiver can drop
	// a redelivery (a 2xx lost on the way back).
	id := fmt.Sprintf("%s.%s.%d-%d", sk.Key, orgOrPlatform(orgID), events[0].Seq, events[len(events)-1].Seq)
	ts := s.o.Now().Unix()
	sig, err := SignWebhook(sk.Secret, id, ts, body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sk.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Gatehouse-Audit-Stream")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	client := s.orgClient
	if sk.OrgID == "" {
		client = s.trustedClient // the operator's own sink, from the config file
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL) // a query may carry the SIEM's own token
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", redactURL(sk.URL), resp.Status)
	}
	return nil
}

func orgOrPlatform(orgID string) string {
	if orgID == "" {
		return "platform"
	}
	return orgID
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the webhook"
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	u.User = nil
	return u.String()
}

func (s *Streamer) fail(ctx context.Context, sk Sink, kind string, err error) {
	st := s.stateOf(sk.Key)
	s.mu.Lock()
	st.Failures++
	backoff := min(time.Duration(math.Pow(2, float64(min(st.Failures-1, 16))))*time.Second, streamMaxBackoff)
	// Jitter, so that sinks failing together do not retry together.
	var j [1]byte
	_, _ = rand.Read(j[:])
	backoff += backoff * time.Duration(j[0]) / 1024
	now := s.o.Now()
	st.LastAttemptAt, st.NextAttemptAt, st.LastError = now, now.Add(backoff), err.Error()
	snapshot := *st
	s.mu.Unlock()
	s.failed.WithLabelValues(kind).Inc()
	s.o.Logger.Warn("audit stream: delivery failed; retrying with back-off", "sink", sk.Key, "failures", snapshot.Failures, "retry_in", backoff.Round(time.Second), "err", err)
	s.saveState(ctx, sk.Key, snapshot)
}

func (s *Streamer) succeed(ctx context.Context, sk Sink) {
	st := s.stateOf(sk.Key)
	s.mu.Lock()
	recovered := st.Failures > 0
	now := s.o.Now()
	st.Failures, st.NextAttemptAt, st.LastError, st.LastAttemptAt, st.LastSuccessAt = 0, time.Time{}, "", now, now
	snapshot := *st
	s.mu.Unlock()
	if recovered {
		s.o.Logger.Info("audit stream: delivering again", "sink", sk.Key)
	}
	s.saveState(ctx, sk.Key, snapshot)
}

// saveState keeps the sink's health where every node's API reads it.
func (s *Streamer) saveState(ctx context.Context, key string, st sinkState) {
	b, _ := json.Marshal(st)
	if err := s.o.Store.PutBlob(ctx, statusKey(key), b); err != nil {
		s.o.Logger.Warn("audit stream: saving status failed", "sink", key, "err", err)
	}
}

// SignWebhook is the Standard Webhooks signature of a message: "v1,"
// and the base64 HMAC-SHA256, under the secret's key, of id, timestamp
// and body joined by ".".
func SignWebhook(secret, id string, ts int64, body []byte) (string, error) {
	key, err := webhookKey(secret)
	if err != nil {
		return "", err
	}
	return webhooksig.Sign(key, id, ts, body), nil
}

// webhookKey decodes a "whsec_" secret (config.WebhookKey).
func webhookKey(secret string) ([]byte, error) {
	key, err := config.WebhookKey(secret)
	if err != nil {
		return nil, fmt.Errorf("a webhook secret %w", err)
	}
	return key, nil
}

// NewWebhookSecret makes a secret of 32 random bytes.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// webhookClient posts to sinks: bounded in time, never redirected, and,
// with public true, only to public addresses (netguard).
func webhookClient(public bool) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if public {
		d.Control = netguard.Control
	}
	tr := &http.Transport{Proxy: nil, DialContext: d.DialContext, TLSHandshakeTimeout: 10 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// checkWebhookURL says what is wrong with a webhook URL ("" if nothing).
func checkWebhookURL(raw string, allowPrivate bool) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return "must be an absolute URL such as https://siem.example.com/gatehouse"
	case len(raw) > 2048:
		return "must be at most 2048 characters"
	case u.User != nil:
		return "must not carry credentials (the signature authenticates Gatehouse)"
	case u.Fragment != "":
		return "must not have a fragment"
	}
	loopback := u.Hostname() == "localhost"
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		loopback = a.IsLoopback()
		if !allowPrivate && !netguard.Public(a) {
			return "must be a public address"
		}
	}
	switch {
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && loopback && allowPrivate:
		return ""
	}
	return "must be https:// (http:// only to this machine, with private networks allowed)"
}
