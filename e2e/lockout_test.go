package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// browserFrom is a browser whose connections come from source address ip
// (any 127.0.0.0/8 address works on Linux loopback).
func (g *gatehouse) browserFrom(t *testing.T, ip string) *browser {
	b := g.browser(t)
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DisableCompression: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, g.addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	b.client.Transport = tr
	return b
}

// tryPassword posts one password sign-in for email on acme's login page.
func (b *browser) tryPassword(email, pw string) page {
	b.t.Helper()
	u := b.g.url("login.acme.localhost", "/.gatehouse/login")
	p := b.get(u)
	return b.post(u, url.Values{"csrf": {field(b.t, csrfRE, p.body)}, "step": {"password"}, "email": {email}, "password": {pw}})
}

// Anyone can run an account's shared failure budget down, from any
// number of addresses; that locks out strangers (guessing stays bounded)
// but not the person, whose browser and address signed in before.
func TestLockoutSparesKnownDeviceAndAddress(t *testing.T) {
	g, _ := startCore(t) // max_failures: 3, max_failures_per_address: 6
	const pw = "alice-pw-123"

	// Alice signs in once from 127.0.0.1: her browser is now known.
	alice := g.browserFrom(t, "127.0.0.1")
	if p := alice.login(g.url("app.localhost", "/"), "alice@acme.example", pw); p.status != 200 {
		t.Fatalf("first sign-in: %d", p.status)
	}
	loginHost := &url.URL{Scheme: "http", Host: "login.acme.localhost:" + g.port, Path: "/"}
	var device *http.Cookie
	for _, c := range alice.jar.Cookies(loginHost) {
		if c.Name == "_gatehouse_device" {
			device = c
		}
	}
	if device == nil {
		t.Fatal("no known-device cookie after a sign-in")
	}

	// Attackers on two other addresses use up the account's budget.
	for i, ip := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.3"} {
		if p := g.browserFrom(t, ip).tryPassword("alice@acme.example", "guess"+string(rune('a'+i))); p.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, p.status)
		}
	}
	// Strangers are refused, even with the right password, from any address.
	for _, ip := range []string{"127.0.0.3", "127.0.0.4"} {
		p := g.browserFrom(t, ip).tryPassword("alice@acme.example", pw)
		if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "for this account") {
			t.Fatalf("stranger at %s with the right password: %d", ip, p.status)
		}
	}
	// More guesses stay refused (the lock is not lifted by trying).
	if p := g.browserFrom(t, "127.0.0.5").tryPassword("alice@acme.example", "guessz"); p.status != http.StatusTooManyRequests {
		t.Fatalf("guess after the lock: %d", p.status)
	}

	// Alice's browser, from a new address, gets in: its device cookie.
	phone := g.browserFrom(t, "127.0.0.6")
	phone.jar.SetCookies(loginHost, []*http.Cookie{{Name: device.Name, Value: device.Value, Path: "/"}})
	if p := phone.tryPassword("alice@acme.example", pw); !signedIn(p) {
		t.Fatalf("known device with the right password: %d %s", p.status, p.body)
	}
	// A fresh browser at the address she signed in from gets in too.
	if p := g.browserFrom(t, "127.0.0.1").tryPassword("alice@acme.example", pw); !signedIn(p) {
		t.Fatalf("known address with the right password: %d %s", p.status, p.body)
	}
	// Strangers on alice's own address use up its budget (6 failures,
	// against made-up accounts): strangers there are refused, alice's
	// browser still signs in.
	for i := 0; i < 6; i++ {
		g.browserFrom(t, "127.0.0.1").tryPassword(fmt.Sprintf("nobody%d@acme.example", i), "guess")
	}
	if p := g.browserFrom(t, "127.0.0.1").tryPassword("bob@acme.example", "bob-example-password"); p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "from your network") {
		t.Fatalf("stranger on an exhausted address: %d", p.status)
	}
	home := g.browserFrom(t, "127.0.0.1")
	home.jar.SetCookies(loginHost, []*http.Cookie{{Name: device.Name, Value: device.Value, Path: "/"}})
	if p := home.tryPassword("alice@acme.example", pw); !signedIn(p) {
		t.Fatalf("known device on an address strangers exhausted: %d %s", p.status, p.body)
	}
	// The device cookie is bound to alice's account: for bob it is nothing.
	for i := 0; i < 3; i++ {
		g.browserFrom(t, "127.0.0.7").tryPassword("bob@acme.example", "guess")
	}
	thief := g.browserFrom(t, "127.0.0.8")
	thief.jar.SetCookies(loginHost, []*http.Cookie{{Name: device.Name, Value: device.Value, Path: "/"}})
	if p := thief.tryPassword("bob@acme.example", "bob-example-password"); p.status != http.StatusTooManyRequests {
		t.Fatalf("alice's device cookie opened bob's locked account: %d", p.status)
	}
	// A known device guessing is bounded by a budget of its own.
	guesser := g.browserFrom(t, "127.0.0.9")
	guesser.jar.SetCookies(loginHost, []*http.Cookie{{Name: device.Name, Value: device.Value, Path: "/"}})
	for i := 0; i < 3; i++ {
		if p := guesser.tryPassword("alice@acme.example", "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("known device guess %d: %d", i, p.status)
		}
	}
	if p := guesser.tryPassword("alice@acme.example", pw); p.status != http.StatusTooManyRequests {
		t.Fatalf("known device after 3 failures: %d, want 429", p.status)
	}
	// A forged device cookie is a stranger.
	forger := g.browserFrom(t, "127.0.0.10")
	forged := device.Value[:len(device.Value)-2] + "AA"
	forger.jar.SetCookies(loginHost, []*http.Cookie{{Name: device.Name, Value: forged, Path: "/"}})
	if p := forger.tryPassword("alice@acme.example", pw); p.status != http.StatusTooManyRequests {
		t.Fatalf("forged device cookie: %d", p.status)
	}
}

// signedIn reports whether a password post signed in (without an rd, the
// sign-in page says so; with one, it redirects onwards).
func signedIn(p page) bool {
	return p.status == http.StatusSeeOther || p.status == http.StatusOK && strings.Contains(p.body, "You are signed in")
}
