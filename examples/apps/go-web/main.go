// Command go-web is an example server-side web app that signs people in
// with Gatehouse's OpenID Provider (authorization code with PKCE, through
// go-oidc and x/oauth2) and shows who they are and which org they signed
// in to. Against `gatehouse serve --dev`, with the demo-web secret the
// banner prints:
//
//	CLIENT_SECRET=... go run ./examples/apps/go-web
//	# browser: http://127.0.0.1:5555/
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config is the app's settings, from the environment.
type Config struct {
	Issuer, ClientID, ClientSecret, RedirectURL, Listen string
	// GatehouseAddr, if set, is where *.localhost names are dialed (the
	// system resolver may not map them to loopback).
	GatehouseAddr string
}

func configFromEnv(getenv func(string) string) Config {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	return Config{Issuer: or("ISSUER", "http://auth.localhost:8080"), ClientID: or("CLIENT_ID", "demo-web"), ClientSecret: getenv("CLIENT_SECRET"),
		RedirectURL: or("REDIRECT_URL", "http://127.0.0.1:5555/callback"), Listen: or("LISTEN", "127.0.0.1:5555"), GatehouseAddr: getenv("GATEHOUSE_ADDR")}
}

// App is the web app: sign-ins in progress and signed-in browsers are
// kept in memory (a real app keeps them in its session store).
type App struct {
	cfg      Config
	ctx      context.Context
	provider *oidc.Provider
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier

	mu       sync.Mutex
	pending  map[string]pending // by state
	sessions map[string]session // by cookie
}

type pending struct {
	nonce, verifier string
	at              time.Time
}

type session struct {
	IDToken string
	Claims  map[string]any
}

// NewApp discovers the provider.
func NewApp(ctx context.Context, cfg Config) (*App, error) {
	if cfg.ClientSecret == "" {
		return nil, errors.New("CLIENT_SECRET is required (dev mode prints demo-web's)")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if cfg.GatehouseAddr != "" {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(addr); strings.HasSuffix(h, "localhost") {
				addr = cfg.GatehouseAddr
			}
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		}}
	}
	ctx = oidc.ClientContext(ctx, client)
	p, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery at %s: %w", cfg.Issuer, err)
	}
	return &App{cfg: cfg, ctx: ctx, provider: p, verifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: cfg.RedirectURL, Endpoint: p.Endpoint(),
			Scopes: []string{oidc.ScopeOpenID, "profile", "email"}},
		pending: map[string]pending{}, sessions: map[string]session{}}, nil
}

const cookieName = "go_web_session"

var page = template.Must(template.New("p").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Example app</title></head>
<body><main><h1>Hello, {{index .Claims "email"}}</h1>
<p>Signed in to organization <strong>{{index .Claims "org_slug"}}</strong> (<code>{{index .Claims "org_id"}}</code>), roles {{index .Claims "roles"}}.</p>
<pre>{{.JSON}}</pre>
<p><a href="/logout">Sign out</a></p></main></body></html>`))

// Handler serves the app.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /callback", a.callback)
	mux.HandleFunc("GET /logout", a.logout)
	return mux
}

func (a *App) current(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[c.Value]
	return s, ok
}

func (a *App) home(w http.ResponseWriter, r *http.Request) {
	s, ok := a.current(r)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusFound)
		return
	}
	j, _ := json.MarshalIndent(s.Claims, "", "  ")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, map[string]any{"Claims": s.Claims, "JSON": string(j)})
}

// login starts a sign-in: state, nonce and a PKCE verifier, kept here.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	a.mu.Lock()
	for k, p := range a.pending { // abandoned sign-ins
		if time.Since(p.at) > 10*time.Minute {
			delete(a.pending, k)
		}
	}
	a.pending[state] = pending{nonce: nonce, verifier: verifier, at: time.Now()}
	a.mu.Unlock()
	http.Redirect(w, r, a.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), http.StatusFound)
}

func (a *App) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		http.Error(w, "sign-in refused: "+e+": "+q.Get("error_description"), http.StatusForbidden)
		return
	}
	a.mu.Lock()
	p, ok := a.pending[q.Get("state")]
	delete(a.pending, q.Get("state"))
	a.mu.Unlock()
	if !ok || time.Since(p.at) > 10*time.Minute {
		http.Error(w, "unknown or expired sign-in: start again", http.StatusBadRequest)
		return
	}
	tok, err := a.oauth.Exchange(a.ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		http.Error(w, "code exchange failed", http.StatusBadGateway)
		log.Printf("go-web: exchange: %v", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := a.verifier.Verify(a.ctx, raw)
	if err != nil || idt.Nonce != p.nonce {
		http.Error(w, "invalid ID token", http.StatusBadGateway)
		log.Printf("go-web: ID token: %v (nonce ok: %v)", err, err == nil && idt.Nonce == p.nonce)
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		http.Error(w, "invalid ID token", http.StatusBadGateway)
		return
	}
	id := rand.Text()
	a.mu.Lock()
	a.sessions[id] = session{IDToken: raw, Claims: claims}
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusFound)
}

// logout ends the app's session and Gatehouse's (RP-initiated logout).
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	s, ok := a.current(r)
	if c, err := r.Cookie(cookieName); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1})
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := a.provider.Claims(&meta); err != nil || meta.EndSession == "" || !ok {
		http.Redirect(w, r, "/", http.StatusFound)
		return
	}
	back := strings.TrimSuffix(a.cfg.RedirectURL, "callback")
	http.Redirect(w, r, meta.EndSession+"?"+url.Values{"id_token_hint": {s.IDToken}, "post_logout_redirect_uri": {back}}.Encode(), http.StatusFound)
}

func main() {
	cfg := configFromEnv(os.Getenv)
	app, err := NewApp(context.Background(), cfg)
	if err != nil {
		log.Fatalf("go-web: %v", err)
	}
	srv := &http.Server{Addr: cfg.Listen, Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("go-web: listening on http://%s/ (issuer %s, client %s)", cfg.Listen, cfg.Issuer, cfg.ClientID)
	log.Fatal(srv.ListenAndServe())
}
