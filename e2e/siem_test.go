package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// siem is a customer's SIEM endpoint: it checks every delivery's Standard
// Webhooks signature (HMAC-SHA256 over id.timestamp.body, written here
// from the spec), and keeps events by chain. It can go down and come back
// on the same address.
type siem struct {
	t      *testing.T
	secret string
	addr   string
	mu     sync.Mutex
	srv    *http.Server
	chains map[string][]uint64 // org ID ("" platform) → seqs received
	ids    map[string]int
	bad    int
}

func newSIEM(t *testing.T) *siem {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s := &siem{t: t, secret: "whsec_" + base64.StdEncoding.EncodeToString(key), chains: map[string][]uint64{}, ids: map[string]int{}}
	s.up("127.0.0.1:0")
	t.Cleanup(s.down)
	return s
}

func (s *siem) up(addr string) {
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: s}
	go s.srv.Serve(ln)
}

func (s *siem) down() { s.srv.Close() }

func (s *siem) url() string { return "http://" + s.addr + "/events" }

func (s *siem) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(s.secret, "whsec_"))
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%s.%s", id, ts, body)
	sent, _ := strconv.ParseInt(ts, 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("webhook-signature") != "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)) || time.Since(time.Unix(sent, 0)).Abs() > 5*time.Minute {
		s.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var msg struct {
		OrgID  string `json:"org_id"`
		Events []struct {
			Seq   uint64 `json:"seq"`
			OrgID string `json:"org_id"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		s.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.ids[id]++
	for _, e := range msg.Events {
		s.chains[e.OrgID] = append(s.chains[e.OrgID], e.Seq)
	}
	w.WriteHeader(http.StatusNoContent)
}

// has checks that org's chain arrived from first to at least last, each
// event once and in order, every delivery signed.
func (s *siem) has(org string, first, last uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.chains[org]
	if s.bad > 0 {
		return fmt.Errorf("%d badly signed deliveries", s.bad)
	}
	for id, n := range s.ids {
		if n > 1 {
			return fmt.Errorf("delivery %s came %d times", id, n)
		}
	}
	for i, seq := range got {
		if seq != first+uint64(i) {
			return fmt.Errorf("chain %q: got %v, want %d.. in order, once each", org, got, first)
		}
	}
	if len(got) == 0 || got[len(got)-1] < last {
		return fmt.Errorf("chain %q: got %d events up to %v, want up to %d", org, len(got), got, last)
	}
	return nil
}

// An org's SIEM webhook and the platform's sink get every audit event,
// signed, in order, once; with both receivers down for a minute, nothing
// is lost, and signing in never waits for them.
func TestAuditWebhooks(t *testing.T) {
	orgSIEM, platSIEM := newSIEM(t), newSIEM(t)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) +
		"admin:\n  allow_private_networks: true\n  audit_webhook:\n    url: " + platSIEM.url() + "\n    secret: \"${PLATFORM_SIEM_SECRET}\"\n"
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456", "PLATFORM_SIEM_SECRET="+platSIEM.secret)

	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	api := func(method, path string, body any) (int, map[string]any) {
		st, _, out := alice.api(method, g.url("login.acme.localhost", "/api/v1/orgs/acme"+path), body,
			"Origin", "http://login.acme.localhost:"+g.port, "Sec-Fetch-Site", "same-origin")
		return st, out
	}
	st, hook := api("PUT", "/audit/webhook", map[string]any{"url": orgSIEM.url(), "secret": orgSIEM.secret})
	if st != 200 {
		t.Fatalf("set webhook: %d %v", st, hook)
	}
	first := uint64(hook["delivered_seq"].(float64)) + 1
	var orgID string
	if _, _, me := alice.api("GET", g.url("login.acme.localhost", "/api/v1/me"), nil); me != nil {
		orgID, _ = me["org_id"].(string)
	}
	head := func() uint64 {
		_, v := api("GET", "/audit/webhook", nil)
		return uint64(v["delivered_seq"].(float64) + v["pending"].(float64))
	}
	g.browser(t).tryPassword("alice@acme.example", "wrong")
	api("POST", "/users", map[string]any{"email": "erin@acme.example"})
	last := head()
	eventually(t, "both sinks have acme's events", func() error {
		if err := orgSIEM.has(orgID, first, last); err != nil {
			return err
		}
		return platSIEM.has(orgID, 1, last)
	})
	if err := platSIEM.has("", 1, 1); err != nil { // the platform's own chain: the policy load
		t.Fatal(err)
	}

	// Both receivers go down for a minute; sign-ins and admin work go on
	// at full speed, their events wait in the chains.
	orgSIEM.down()
	platSIEM.down()
	outage := time.Now()
	for i := range 5 {
		start := time.Now()
		g.browser(t).tryPassword("bob@acme.example", "wrong")
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a sign-in waited %s for the SIEM", d)
		}
		api("POST", "/users", map[string]any{"email": fmt.Sprintf("outage%d@acme.example", i)})
	}
	last = head()
	_, v := api("GET", "/audit/webhook", nil)
	if v["pending"].(float64) < 5 {
		t.Fatalf("pending while down: %v", v)
	}
	time.Sleep(time.Minute - time.Since(outage))
	_, v = api("GET", "/audit/webhook", nil)
	if v["failures"].(float64) < 3 || v["last_error"] == nil {
		t.Fatalf("no failures recorded while down: %v", v)
	}
	orgSIEM.up(orgSIEM.addr)
	platSIEM.up(platSIEM.addr)
	eventuallyWithin(t, 90*time.Second, "both sinks catch up after the outage", func() error {
		if err := orgSIEM.has(orgID, first, last); err != nil {
			return err
		}
		return platSIEM.has(orgID, 1, last)
	})
	_, v = api("GET", "/audit/webhook", nil)
	if v["failures"].(float64) != 0 || v["pending"].(float64) != 0 {
		t.Fatalf("status after recovery: %v", v)
	}
}
