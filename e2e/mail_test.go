package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/mailer"
)

// mailpit is a running mailpit (an SMTP server this project did not
// write) with its HTTP API.
type mailpit struct {
	SMTP string // 127.0.0.1:port
	API  string // http://127.0.0.1:port
	cmd  *exec.Cmd
}

// stop ends mailpit (an SMTP outage).
func (m *mailpit) stop() {
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
}

// mailpitBinary finds mailpit (.ci/run installs it with go install),
// skipping on a developer machine without it and failing in CI.
func mailpitBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{filepath.Join(os.Getenv("HOME"), "go", "bin", "mailpit"), "mailpit"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") != "" {
		t.Fatal("mailpit is not installed (go install github.com/axllent/mailpit@v1.33.1)")
	}
	t.Skip("mailpit is not installed: the email test is skipped")
	return ""
}

// startMailpit runs mailpit on loopback with extra flags.
func startMailpit(t *testing.T, flags ...string) *mailpit {
	t.Helper()
	return startMailpitAt(t, "127.0.0.1:"+freePort(t), "http://127.0.0.1:"+freePort(t), flags...)
}

// startMailpitAt runs mailpit on the given SMTP address and API URL.
func startMailpitAt(t *testing.T, smtp, api string, flags ...string) *mailpit {
	t.Helper()
	exe := mailpitBinary(t)
	m := &mailpit{SMTP: smtp, API: api}
	args := append([]string{"--smtp", m.SMTP, "--listen", strings.TrimPrefix(m.API, "http://"), "--database", filepath.Join(t.TempDir(), "mail.db"),
		"--smtp-disable-rdns", "--disable-version-check"}, flags...)
	cmd := exec.Command(exe, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.cmd = cmd
	t.Cleanup(m.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if resp, err := http.Get(m.API + "/api/v1/messages"); err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", m.SMTP); err == nil {
				c.Close()
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastTo is the text of the newest message to addr (waiting a little for
// it).
func (m *mailpit) lastTo(t *testing.T, addr string) (subject, text string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var list struct {
			Messages []struct {
				ID      string
				Subject string
				To      []struct{ Address string }
			} `json:"messages"`
		}
		resp, err := http.Get(m.API + "/api/v1/messages")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
		}
		for _, msg := range list.Messages {
			if len(msg.To) > 0 && msg.To[0].Address == addr {
				resp, err := http.Get(m.API + "/api/v1/message/" + msg.ID)
				if err != nil {
					t.Fatal(err)
				}
				var full struct{ Text string }
				_ = json.NewDecoder(resp.Body).Decode(&full)
				resp.Body.Close()
				return msg.Subject, full.Text
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message to %s at mailpit", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// smtpCert writes a certificate and key for 127.0.0.1 and returns
// their paths and a TLS config that trusts the certificate.
func smtpCert(t *testing.T) (certFile, keyFile string, trust *tls.Config) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	kb, _ := x509.MarshalECPrivateKey(key)
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// The mailer against mailpit: STARTTLS required by the server, with
// authentication, delivers; a server whose certificate is not trusted is
// refused (nothing is sent in the clear instead).
func TestMailerSTARTTLS(t *testing.T) {
	certFile, keyFile, trust := smtpCert(t)
	authFile := filepath.Join(t.TempDir(), "auth")
	must(t, os.WriteFile(authFile, []byte("gatehouse:relay-pw\n"), 0o600))
	mp := startMailpit(t, "--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile, "--smtp-require-starttls", "--smtp-auth-file", authFile)
	host, port, _ := net.SplitHostPort(mp.SMTP)
	var p int
	fmt.Sscan(port, &p)
	msg := notify.Message{Subject: "Your code", Text: "Your code is 123456.", HTML: "<p>Your code is <b>123456</b>.</p>"}
	s, err := mailer.New(mailer.Config{Host: host, Port: p, Username: "gatehouse", Password: "relay-pw", TLS: mailer.StartTLS, From: "Gatehouse <no-reply@saas.example>", TLSConfig: trust})
	must(t, err)
	must(t, s.Send(context.Background(), "erin@acme.example", msg))
	if subj, text := mp.lastTo(t, "erin@acme.example"); subj != "Your code" || !strings.Contains(text, "123456") {
		t.Fatalf("delivered %q %q", subj, text)
	}
	untrusted, err := mailer.New(mailer.Config{Host: host, Port: p, Username: "gatehouse", Password: "relay-pw", TLS: mailer.StartTLS, From: "no-reply@saas.example"})
	must(t, err)
	if err := untrusted.Send(context.Background(), "fay@acme.example", msg); err == nil {
		t.Fatal("sent to a server whose certificate is not trusted")
	}
	wrongPW, _ := mailer.New(mailer.Config{Host: host, Port: p, Username: "gatehouse", Password: "wrong", TLS: mailer.StartTLS, From: "no-reply@saas.example", TLSConfig: trust})
	if err := wrongPW.Send(context.Background(), "gil@acme.example", msg); err == nil {
		t.Fatal("sent with a wrong password")
	}
	for _, c := range []mailer.Config{
		{Host: "smtp.example.com", TLS: mailer.None, From: "a@b.example"},
		{Host: "", From: "a@b.example"},
		{Host: "smtp.example.com", From: "not an address"},
		{Host: "smtp.example.com", TLS: "ssl", From: "a@b.example"},
	} {
		if _, err := mailer.New(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// startWithMail starts Gatehouse (testConfig, changed by tweak) sending
// email through a mailpit it starts.
func startWithMail(t *testing.T, tweak func(string) string) (*gatehouse, *upstream, *mailpit) {
	t.Helper()
	mp := startMailpit(t)
	host, port, _ := net.SplitHostPort(mp.SMTP)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	if tweak != nil {
		cfg = tweak(cfg)
	}
	cfg += "email:\n  from: \"Gatehouse <no-reply@saas.example>\"\n  smtp: { host: " + host + ", port: " + port + ", tls: none }\n"
	return start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456"), up, mp
}

var sixDigitRE = regexp.MustCompile(`\b\d{6}\b`)

// Email codes, the weakest factor, where an org names it: the second step
// emails the org's mfa_code message through a real SMTP server
// (mailpit); the code signs in once; a wrong one is refused.
func TestEmailCodes(t *testing.T) {
	g, up, mp := startWithMail(t, func(cfg string) string {
		return strings.Replace(cfg, "  - slug: globex\n", "    mfa: { require: all, factors: [email] }\n  - slug: globex\n", 1)
	})

	b := g.browser(t)
	p := b.passwordStep(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	if !strings.Contains(p.body, `value="email"`) || strings.Contains(p.body, "totp-secret") {
		t.Fatalf("no email code offered:\n%s", p.body)
	}
	sent := b.submitWith(p, "send", "email")
	if sent.status != 200 || !strings.Contains(sent.body, "We emailed a code to a***@acme.example") {
		t.Fatalf("sending the code: %d\n%s", sent.status, sent.body)
	}
	subject, text := mp.lastTo(t, "alice@acme.example")
	code := sixDigitRE.FindString(text)
	if code == "" || !strings.Contains(subject+text, "Acme Corp") {
		t.Fatalf("the message: %q\n%s", subject, text)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	if r := b.submitCode(sent, wrong); r.status != http.StatusUnauthorized {
		t.Fatalf("a wrong code: %d", r.status)
	}
	r := b.follow(b.submitCode(sent, code))
	if !strings.Contains(r.body, "upstream / for alice@acme.example") {
		t.Fatalf("the emailed code: %d %s\n%s", r.status, r.url, r.body)
	}
	if amr, _ := jwtPart(t, up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); len(amr) != 3 || amr[1] != "email" {
		t.Fatalf("amr %v", amr)
	}
	// The code was good once: the sign-in it finished is gone.
	if r := b.submitCode(sent, code); r.status != http.StatusBadRequest {
		t.Fatalf("the code again: %d", r.status)
	}
}

// countTo is how many messages mailpit holds for each address.
func (m *mailpit) countTo(t *testing.T) map[string]int {
	t.Helper()
	var list struct {
		Messages []struct {
			To []struct{ Address string }
		} `json:"messages"`
	}
	resp, err := http.Get(m.API + "/api/v1/messages?limit=500")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&list)
	out := map[string]int{}
	for _, msg := range list.Messages {
		for _, to := range msg.To {
			out[to.Address]++
		}
	}
	return out
}

var inviteLinkRE = regexp.MustCompile(`https?://[^\s]+/\.gatehouse/invite\?[^\s]+`)

// Invitations by email through the outbox: the org's invitation message
// arrives with a link that works; with the SMTP server down while ten
// invitations are made, all ten arrive once it is back, once each.
func TestInvitationEmails(t *testing.T) {
	g, _, mp := startWithMail(t, nil)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	invite := func(email string) {
		t.Helper()
		if st, _, p := alice.api("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme/invitations"), map[string]any{"email": email, "roles": []string{"member"}}, same...); st != 201 {
			t.Fatalf("invite %s: %d %v", email, st, p)
		}
	}
	invite("erin@acme.example")
	subject, text := mp.lastTo(t, "erin@acme.example")
	link := inviteLinkRE.FindString(text)
	if link == "" || !strings.Contains(subject+text, "Acme Corp") {
		t.Fatalf("the invitation message: %q\n%s", subject, text)
	}
	if p := g.browser(t).get(link); p.status != 200 || !strings.Contains(p.body, "erin@acme.example") {
		t.Fatalf("the emailed link: %d\n%s", p.status, p.body)
	}

	// The SMTP server goes away; ten invitations are made meanwhile.
	mp.stop()
	for i := range 10 {
		invite(fmt.Sprintf("p%d@acme.example", i))
	}
	time.Sleep(3 * time.Second) // a few failed attempts
	mp = startMailpitAt(t, mp.SMTP, mp.API)
	eventuallyWithin(t, 40*time.Second, "the ten invitations arrive", func() error {
		n := mp.countTo(t)
		got := 0
		for i := range 10 {
			got += n[fmt.Sprintf("p%d@acme.example", i)]
		}
		return holds(got == 10, "%d of 10 arrived: %v", got, n)
	})
	time.Sleep(2 * time.Second) // nothing more comes
	for addr, c := range mp.countTo(t) {
		if c != 1 {
			t.Errorf("%s got %d messages", addr, c)
		}
	}
	if !g.logged(`"msg":"outbox: not delivered; retrying"`) {
		t.Error("the outage left no trace in the log")
	}
}

var resetLinkRE = regexp.MustCompile(`https?://[^\s]+/\.gatehouse/reset\?[^\s]+`)

// Password reset by email: the request answers the same for an unknown
// address (and sends nothing); the emailed link sets a new password once
// (a common one refused), ends the person's sessions, and the old
// password stops working.
func TestPasswordReset(t *testing.T) {
	g, _, mp := startWithMail(t, nil)
	app := g.url("app.localhost", "/")
	// dave, made through the API, has a password of the org's own.
	alice := g.browser(t)
	alice.login(app, "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	if st, _, p := alice.api("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme/users"), map[string]any{"email": "dave@acme.example", "password": "dave-long-password"}, same...); st != 201 {
		t.Fatalf("create dave: %d %v", st, p)
	}
	daveOld := g.browser(t)
	daveOld.login(app, "dave@acme.example", "dave-long-password")

	request := func(email string) page {
		t.Helper()
		b := g.browser(t)
		p := b.get(g.url("login.acme.localhost", "/.gatehouse/reset"))
		if p.status != 200 || !strings.Contains(p.body, "Email me a link") {
			t.Fatalf("reset page: %d\n%s", p.status, p.body)
		}
		form := hidden(p.body)
		form.Set("email", email)
		return b.post(resolve(p.url, field(t, actionRE, p.body)), form)
	}
	known, unknown := request("dave@acme.example"), request("nobody@acme.example")
	for _, r := range []page{known, unknown} {
		if r.status != 200 || !strings.Contains(r.body, "we emailed it a link") {
			t.Fatalf("reset request: %d\n%s", r.status, r.body)
		}
	}
	if strings.ReplaceAll(known.body, "dave@acme.example", "X") != strings.ReplaceAll(unknown.body, "nobody@acme.example", "X") &&
		!strings.Contains(unknown.body, "If nobody@acme.example has an account") {
		t.Fatal("the answers differ")
	}
	_, text := mp.lastTo(t, "dave@acme.example")
	link := resetLinkRE.FindString(text)
	if link == "" {
		t.Fatalf("no link in:\n%s", text)
	}
	if n := mp.countTo(t)["nobody@acme.example"]; n != 0 {
		t.Fatalf("an unknown address got %d messages", n)
	}
	// The link: a common password refused, then a good one set.
	b := g.browser(t)
	p := b.get(link)
	if p.status != 200 || !strings.Contains(p.body, "Choose a new password") {
		t.Fatalf("the link: %d\n%s", p.status, p.body)
	}
	set := func(pw string) page {
		form := hidden(p.body)
		form.Set("password", pw)
		form.Set("password2", pw)
		return b.post(resolve(p.url, field(t, actionRE, p.body)), form)
	}
	if r := set("qwertyuiopasdfghjkl"); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "choose another") {
		t.Fatalf("a common password: %d\n%s", r.status, r.body)
	}
	if r := set("a brand new passphrase"); r.status != 200 || !strings.Contains(r.body, "Your password is changed") {
		t.Fatalf("setting it: %d\n%s", r.status, r.body)
	}
	if r := set("another new passphrase"); r.status != http.StatusGone {
		t.Fatalf("the link twice: %d", r.status)
	}
	// dave's old session ended; the new password signs in, the old not.
	if r := daveOld.get(app); r.status != http.StatusFound {
		t.Fatalf("dave's old session after the reset: %d", r.status)
	}
	if r := g.browser(t).login(app, "dave@acme.example", "a brand new passphrase"); !strings.Contains(r.body, "upstream / for dave@acme.example") {
		t.Fatalf("the new password: %d %s", r.status, r.body)
	}
	nb := g.browser(t)
	p = nb.follow(nb.get(app))
	form := hidden(p.body)
	form.Set("email", "dave@acme.example")
	p = nb.follow(nb.post(resolve(p.url, field(t, actionRE, p.body)), form))
	if !strings.Contains(p.body, "Forgot your password?") {
		t.Fatalf("no reset link on the password page:\n%s", p.body)
	}
	form = hidden(p.body)
	form.Set("email", "dave@acme.example")
	form.Set("password", "dave-long-password")
	if r := nb.post(resolve(p.url, field(t, actionRE, p.body)), form); r.status != http.StatusUnauthorized {
		t.Fatalf("the old password: %d", r.status)
	}
}

// A new-sign-in alert, where the org asks: a sign-in from a browser and
// network the account never used sends the org's new_sign_in message;
// the same browser again sends nothing.
func TestNewSignInAlert(t *testing.T) {
	g, _, mp := startWithMail(t, func(cfg string) string {
		return strings.Replace(cfg, "  - slug: globex\n", "    new_sign_in_alert: true\n  - slug: globex\n", 1)
	})
	app := g.url("app.localhost", "/")
	b := g.browser(t)
	b.login(app, "bob@acme.example", "bob-example-password")
	subject, text := mp.lastTo(t, "bob@acme.example")
	if !strings.Contains(subject+text, "Acme Corp") || !strings.Contains(text, "127.0.0.1") {
		t.Fatalf("the alert: %q\n%s", subject, text)
	}
	// Signed in again from the same browser (its device cookie, no
	// session): known, no alert.
	b2 := g.browser(t)
	u := mustParse(g.url("login.acme.localhost", "/"))
	for _, c := range b.jar.Cookies(u) {
		if strings.Contains(c.Name, "gatehouse_device") {
			b2.jar.SetCookies(u, []*http.Cookie{c})
		}
	}
	b2.login(app, "bob@acme.example", "bob-example-password")
	time.Sleep(2 * time.Second)
	if n := mp.countTo(t)["bob@acme.example"]; n != 1 {
		t.Fatalf("%d alerts, want 1", n)
	}
	// carol's org does not ask: no alert.
	g.browser(t).login(g.url("globex-app.localhost", "/"), "carol@globex.example", "carol-pw-456")
	time.Sleep(time.Second)
	if n := mp.countTo(t)["carol@globex.example"]; n != 0 {
		t.Fatalf("carol got %d alerts", n)
	}
}

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
