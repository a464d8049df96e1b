package e2e

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/webhooksig"
)

// smsReceiver is an operator's SMS relay: it verifies each request's
// Standard Webhooks signature, and answers with status(attempt).
type smsReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	attempts map[string]int // by webhook-id
	texts    []map[string]string
	bad      int
}

func newSMSReceiver(t *testing.T, secret string, status func(to string, attempt int) int) *smsReceiver {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	s := &smsReceiver{attempts: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("webhook-id")
		ts, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
		s.mu.Lock()
		defer s.mu.Unlock()
		if id == "" || r.Header.Get("webhook-signature") != webhooksig.Sign(key, id, ts, body) || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
			s.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m map[string]string
		_ = json.Unmarshal(body, &m)
		s.attempts[id]++
		st := status(m["to"], s.attempts[id])
		if st/100 == 2 && s.attempts[id] >= 1 {
			// Idempotent on webhook-id: a retry of a delivered one is not
			// sent twice (Gatehouse does not retry a 2xx anyway).
			s.texts = append(s.texts, m)
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *smsReceiver) sent() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]string(nil), s.texts...)
}

// Invitations by text message through the operator's webhook: the
// request is signed (Standard Webhooks) and carries the org's invitation
// SMS with a working link; a relay that is down for a while gets it once
// it is back, once; a number the relay refuses for good is given up at
// once and audited.
func TestInvitationTexts(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	relay := newSMSReceiver(t, secret, func(to string, attempt int) int {
		switch {
		case to == "+15550000000":
			return http.StatusBadRequest // not a mobile number
		case attempt < 3:
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	g, _, mp := startWithMail(t, func(cfg string) string {
		return cfg + "sms:\n  webhook: { url: " + relay.URL + ", secret: \"" + secret + "\" }\n"
	})
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	invite := func(email, phone string) map[string]any {
		t.Helper()
		st, _, v := alice.api("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme/invitations"), map[string]any{"email": email, "phone": phone}, same...)
		if st != 201 {
			t.Fatalf("invite %s: %d %v", email, st, v)
		}
		return v
	}
	if v := invite("gina@acme.example", "+14155550123"); v["delivery"] != "queued" || v["text_delivery"] != "queued" || v["phone"] != "+14155550123" {
		t.Fatalf("the invitation: %v", v)
	}
	invite("hank@acme.example", "+15550000000")
	if st, _, p := alice.api("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme/invitations"), map[string]any{"email": "ivan@acme.example", "phone": "0415 555 0123"}, same...); st != 400 || !strings.Contains(p["detail"].(string), "E.164") {
		t.Fatalf("a number not in E.164: %d %v", st, p)
	}
	eventuallyWithin(t, 30*time.Second, "the text arrives after the relay's outage", func() error {
		return holds(len(relay.sent()) == 1, "%d texts", len(relay.sent()))
	})
	time.Sleep(2 * time.Second) // nothing more comes
	texts := relay.sent()
	if len(texts) != 1 || texts[0]["to"] != "+14155550123" || texts[0]["org"] != "acme" || texts[0]["kind"] != "invitation" {
		t.Fatalf("texts: %v", texts)
	}
	link := inviteLinkRE.FindString(texts[0]["text"])
	if link == "" || !strings.Contains(texts[0]["text"], "Acme Corp") {
		t.Fatalf("the text: %q", texts[0]["text"])
	}
	if p := g.browser(t).get(link); p.status != 200 || !strings.Contains(p.body, "gina@acme.example") {
		t.Fatalf("the texted link: %d", p.status)
	}
	relay.mu.Lock()
	refused, bad := 0, relay.bad
	for _, n := range relay.attempts {
		if n == 1 {
			refused++
		}
	}
	relay.mu.Unlock()
	if refused != 1 || bad != 0 {
		t.Fatalf("the refused number was tried other than once (%v), or a signature failed (%d)", relay.attempts, bad)
	}
	// The email went too; the audit trail has both texts' outcomes.
	if n := mp.countTo(t)["gina@acme.example"]; n != 1 {
		t.Fatalf("gina's emails: %d", n)
	}
	st, _, events := alice.api("GET", g.url("login.acme.localhost", "/api/v1/orgs/acme/audit?action=sms.sent"), nil)
	items, _ := events["items"].([]any)
	outcomes := map[string]string{}
	for _, it := range items {
		e := it.(map[string]any)
		outcomes[e["target"].(string)] = e["outcome"].(string)
	}
	if st != 200 || outcomes["+14155550123"] != "success" || outcomes["+15550000000"] != "failure" {
		t.Fatalf("sms.sent events: %d %v", st, items)
	}
}
