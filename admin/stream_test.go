package admin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/netguard"
	"github.com/gatehouse/gatehouse/store"
)

// receiver is a SIEM endpoint: it checks each delivery's signature the
// way the Standard Webhooks libraries do (written here from the spec, not
// with Gatehouse's signer) and keeps the events by chain. It can be
// stopped and started again on the same address.
type receiver struct {
	t      *testing.T
	secret string
	addr   string
	mu     sync.Mutex
	srv    *http.Server
	events map[string][]store.AuditEvent // by org ("" platform)
	ids    map[string]int                // webhook-id → deliveries
	bad    []string
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret, events: map[string][]store.AuditEvent{}, ids: map[string]int{}}
	r.start("127.0.0.1:0")
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: r}
	go r.srv.Serve(ln)
}

func (r *receiver) stop() { r.srv.Close() }

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts, sig := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.secret, "whsec_"))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	n, err := strconv.ParseInt(ts, 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !hmac.Equal([]byte(sig), []byte(want)) || err != nil || time.Since(time.Unix(n, 0)) > 5*time.Minute {
		r.bad = append(r.bad, id)
		w.WriteHeader(401)
		return
	}
	var msg StreamMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		r.bad = append(r.bad, id)
		w.WriteHeader(400)
		return
	}
	r.ids[id]++
	r.events[msg.OrgID] = append(r.events[msg.OrgID], msg.Events...)
	w.WriteHeader(204)
}

// chain checks the receiver got exactly seqs from..to of org's chain, in
// order, once each.
func (r *receiver) chain(org string, from, to uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.events[org]
	if len(got) != int(to-from+1) {
		return fmt.Errorf("org %q: %d events, want %d (%d..%d)", org, len(got), to-from+1, from, to)
	}
	for i, e := range got {
		if e.Seq != from+uint64(i) || e.OrgID != org || store.AuditHash(e) != e.Hash {
			return fmt.Errorf("org %q: event %d is seq %d (org %q), want %d, intact", org, i, e.Seq, e.OrgID, from+uint64(i))
		}
	}
	for id, n := range r.ids {
		if n > 1 {
			return fmt.Errorf("delivery %s came %d times", id, n)
		}
	}
	if len(r.bad) > 0 {
		return fmt.Errorf("badly signed deliveries: %v", r.bad)
	}
	return nil
}

func appendN(t *testing.T, st store.Store, org string, n int) {
	for i := range n {
		must(t, st.AppendAudit(context.Background(), store.AuditEvent{OrgID: org, Actor: "user:x", Action: "test." + strconv.Itoa(i), Outcome: "success"}))
	}
}

func TestAuditStream(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	appendN(t, h.st, "org_a", 5) // before the webhook: not sent to it
	orgSecret := NewWebhookSecret()
	org := newReceiver(t, orgSecret)
	r := h.do(t, "admin-a", "PUT", "/orgs/a/audit/webhook", map[string]any{"url": org.url(), "secret": orgSecret})
	if r.status != 200 {
		t.Fatalf("set webhook: %d %s", r.status, r.body)
	}
	start := h.headOf(t, "org_a") // the first event it gets: its own registration
	platSecret := NewWebhookSecret()
	plat := newReceiver(t, platSecret)
	now := time.Now()
	s := NewStreamer(StreamOptions{Store: h.st, AllowPrivateNetworks: true, Node: "n1", Now: func() time.Time { return now },
		Platform: &Sink{Key: PlatformSinkKey(plat.url()), URL: plat.url(), Secret: platSecret}})

	appendN(t, h.st, "org_a", 250) // more than two batches
	appendN(t, h.st, "org_b", 7)
	appendN(t, h.st, "", 3)
	s.Tick(ctx)
	if err := org.chain("org_a", start, h.headOf(t, "org_a")); err != nil {
		t.Fatal(err)
	}
	if len(org.events["org_b"]) != 0 {
		t.Fatal("an org's webhook got another org's events")
	}
	for _, c := range []string{"org_a", "org_b", ""} {
		if err := plat.chain(c, 1, h.headOf(t, c)); err != nil {
			t.Fatalf("platform sink: %v", err)
		}
	}

	// The receiver goes down; events keep coming; nothing waits for it.
	org.stop()
	appendN(t, h.st, "org_a", 40)
	s.Tick(ctx)
	var v WebhookView
	v = WebhookView{}
	h.do(t, "auditor-a", "GET", "/orgs/a/audit/webhook", nil).json(t, &v)
	if v.Failures != 1 || v.LastError == "" || v.Pending != 40 || v.NextAttemptAt.IsZero() {
		t.Fatalf("status while down: %+v", v)
	}
	// Back-off: no retry before its time, however many rounds run.
	for range 5 {
		s.Tick(ctx)
	}
	v = WebhookView{}
	h.do(t, "auditor-a", "GET", "/orgs/a/audit/webhook", nil).json(t, &v)
	if v.Failures != 1 {
		t.Fatalf("retried inside its back-off: %+v", v)
	}
	// Back after a minute (and more failures meanwhile): everything, once,
	// in order.
	for range 4 {
		now = now.Add(20 * time.Second)
		s.Tick(ctx)
	}
	org.start(org.addr)
	now = now.Add(streamMaxBackoff)
	s.Tick(ctx)
	if err := org.chain("org_a", start, h.headOf(t, "org_a")); err != nil {
		t.Fatal(err)
	}
	v = WebhookView{}
	h.do(t, "auditor-a", "GET", "/orgs/a/audit/webhook", nil).json(t, &v)
	if v.Failures != 0 || v.Pending != 0 || v.LastError != "" || v.LastSuccessAt.IsZero() {
		t.Fatalf("status after recovery: %+v", v)
	}

	// A second node waits while the first holds the delivery lock.
	other := NewStreamer(StreamOptions{Store: h.st, AllowPrivateNetworks: true, Node: "n2"})
	appendN(t, h.st, "org_a", 3)
	other.Tick(ctx)
	if err := org.chain("org_a", start, h.headOf(t, "org_a")-3); err != nil {
		t.Fatalf("a second node delivered while the first held the lock: %v", err)
	}
	s.Tick(ctx)
	if err := org.chain("org_a", start, h.headOf(t, "org_a")); err != nil {
		t.Fatal(err)
	}

	// The secret is never shown again, nor in the audit trail.
	r = h.do(t, "admin-a", "GET", "/orgs/a/audit/webhook", nil)
	ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Action: "webhook.set", Limit: 1})
	if strings.Contains(string(r.body), orgSecret) || len(ev) != 1 || strings.Contains(fmt.Sprint(ev[0].Details), orgSecret[6:]) {
		t.Fatalf("secret leaked: %s %v", r.body, ev)
	}
	// Removed: nothing more is sent.
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/audit/webhook", nil); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	before := len(org.events["org_a"])
	appendN(t, h.st, "org_a", 2)
	s.Tick(ctx)
	if len(org.events["org_a"]) != before {
		t.Fatal("a removed webhook still gets events")
	}
}

func (h *harness) headOf(t *testing.T, org string) uint64 {
	heads, err := h.st.AuditHeads(context.Background())
	must(t, err)
	for _, hd := range heads {
		if hd.OrgID == org {
			return hd.Seq
		}
	}
	return 0
}

func TestWebhookURLs(t *testing.T) {
	for _, tc := range []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"https://siem.example.com/in", false, true},
		{"https://siem.example.com:8443/in?x=1", false, true},
		{"http://siem.example.com/in", false, false},
		{"http://127.0.0.1:9000/in", false, false},
		{"http://127.0.0.1:9000/in", true, true},
		{"http://localhost/in", true, true},
		{"http://10.0.0.1/in", true, false},
		{"https://10.0.0.1/in", false, false},
		{"https://10.0.0.1/in", true, true},
		{"https://169.254.169.254/latest", false, false},
		{"https://[::1]/in", false, false},
		{"https://[::ffff:10.0.0.1]/in", false, false},
		{"https://100.64.1.1/in", false, false},
		{"https://user:pw@siem.example.com/in", false, false},
		{"https://siem.example.com/in#frag", false, false},
		{"siem.example.com/in", false, false},
		{"ftp://siem.example.com/in", false, false},
		{"", false, false},
	} {
		if got := checkWebhookURL(tc.url, tc.allowPrivate) == ""; got != tc.ok {
			t.Errorf("checkWebhookURL(%q, %v) ok = %v, want %v", tc.url, tc.allowPrivate, got, tc.ok)
		}
	}
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true}, {"2606:4700::1", true}, {"127.0.0.1", false}, {"10.1.2.3", false}, {"172.16.0.1", false},
		{"192.168.1.1", false}, {"169.254.169.254", false}, {"100.64.0.1", false}, {"::1", false}, {"fe80::1", false},
		{"fc00::1", false}, {"::ffff:127.0.0.1", false}, {"0.0.0.0", false}, {"224.0.0.1", false},
	} {
		if got := netguard.Public(netip.MustParseAddr(tc.addr)); got != tc.public {
			t.Errorf("netguard.Public(%s) = %v, want %v", tc.addr, got, tc.public)
		}
	}
}

// An org webhook cannot reach the operator's network unless the
// deployment allows it, whatever the name resolves to: the check is on
// the address connected to.
func TestWebhookClientRefusesPrivateAddresses(t *testing.T) {
	rcv := newReceiver(t, NewWebhookSecret())
	_, port, _ := net.SplitHostPort(rcv.addr)
	resp, err := webhookClient(true).Post("http://localhost:"+port+"/hook", "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatal("a public-only webhook client reached localhost")
	}
	if !strings.Contains(err.Error(), "not a public address") {
		t.Fatalf("error %v", err)
	}
}

func TestWebhookSecrets(t *testing.T) {
	if _, err := webhookKey(NewWebhookSecret()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "whsec_", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 8)), "secret", base64.StdEncoding.EncodeToString(make([]byte, 32))} {
		if _, err := webhookKey(bad); err == nil {
			t.Errorf("webhookKey(%q) accepted", bad)
		}
	}
	h := newHarness(t)
	for _, body := range []map[string]any{
		{"url": "https://siem.example.com/in", "secret": "nope"},
		{"url": "ftp://siem.example.com/in"},
	} {
		if r := h.do(t, "admin-a", "PUT", "/orgs/a/audit/webhook", body); r.status != 400 {
			t.Errorf("%v: %d", body, r.status)
		}
	}
}
