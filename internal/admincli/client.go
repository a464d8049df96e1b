package admincli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// apiPrefix is where the admin API lives under a deployment's public URL.
const apiPrefix = "/api/v1"

// maxAnswer bounds an answer the client reads whole (a 500-item page is
// far below it); streamed exports are not bounded.
const maxAnswer = 64 << 20

// client calls one deployment's admin API with one token.
type client struct {
	base    *url.URL // the public URL with apiPrefix, no trailing slash
	token   string
	timeout time.Duration
	hc      *http.Client
}

// configError is a bad --url, --token, --cacert or --output: exit 2,
// without the verb's usage (the problem is not the verb's arguments).
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// newClient checks the global settings and builds the HTTP client.
func newClient(g *globals) (*client, error) {
	base, err := apiBase(g.url)
	if err != nil {
		return nil, err
	}
	tok := strings.TrimSpace(g.token) // env files often end the value with a newline
	if tok == "" {
		return nil, &configError{"no API token: set GATEHOUSE_TOKEN or pass --token (a token starts with ghat_)"}
	}
	if strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		// Not echoed: it is, or is close to, a secret.
		return nil, &configError{"the API token holds spaces or control characters, which a token never has: check --token or GATEHOUSE_TOKEN"}
	}
	tr := baseTransport()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if g.cacert != "" {
		pem, err := os.ReadFile(g.cacert)
		if err != nil {
			return nil, &configError{fmt.Sprintf("--cacert: %v", err)}
		}
		// Like curl's --cacert, the file replaces the system's roots: a
		// private deployment is then trusted through its own CA only.
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &configError{fmt.Sprintf("--cacert %s: no PEM certificate in it", g.cacert)}
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if base.Scheme == "http" {
		// Plain HTTP is allowed to loopback only: never through a proxy
		// (HTTP_PROXY would carry the token across the network, and Go
		// proxies *.localhost names), and only to addresses that really
		// are loopback, whatever the name resolves to.
		tr.Proxy = nil
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
		tr.DialContext = d.DialContext
	}
	if h := strings.ToLower(base.Hostname()); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		// *.localhost is loopback (RFC 6761), as browsers treat it: dev
		// deployments' hosts (auth.localhost) need no resolver entry.
		tr.Proxy = nil
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		}
	}
	hc := &http.Client{
		Transport: tr,
		// The API never redirects; following one could send the token
		// elsewhere (or to http:// on the same host), so a redirect is
		// reported instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &client{base: base, token: tok, timeout: g.timeout, hc: hc}, nil
}

// baseTransport is a copy of the default transport (proxy settings from
// the environment, HTTP/2), or the same made afresh if a program replaced
// it.
func baseTransport() *http.Transport {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, MaxIdleConns: 10,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second}
}

// apiBase checks --url and returns the API's base URL.
func apiBase(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, &configError{"no deployment URL: set GATEHOUSE_URL or pass --url (its public URL, such as https://auth.example.com)"}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, &configError{fmt.Sprintf("--url %q: not a URL like https://auth.example.com", raw)}
	}
	if u.User != nil {
		return nil, &configError{"--url must not hold credentials: pass the API token with --token or GATEHOUSE_TOKEN"}
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, &configError{fmt.Sprintf("--url %q: give the deployment's public URL only, such as https://auth.example.com", raw)}
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, &configError{fmt.Sprintf("--url %s: refusing plain http:// to a host that is not loopback: the API token would cross the network in clear. "+
			"Use https:// (with --cacert FILE for a private or dev CA); http:// is accepted only for 127.0.0.0/8, ::1, localhost and *.localhost", u.Redacted())}
	}
	p := strings.TrimRight(u.Path, "/")
	// Forgiving: the API's own URL works as well as the deployment's.
	if !strings.HasSuffix(p, apiPrefix) {
		p += apiPrefix
	}
	u.Path, u.RawPath = p, ""
	return u, nil
}

// isLoopbackHost reports whether host names this machine only.
func isLoopbackHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// loopbackOnly is the dialer's check for plain HTTP: it sees the address
// actually dialed, after name resolution.
func loopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("refusing plain http to %s: %w", address, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().IsLoopback() {
		return fmt.Errorf("refusing plain http to %s: the name resolved to an address that is not loopback", address)
	}
	return nil
}

// apiError is an answer other than 2xx: the problem details the API sent
// or, from something else in the way, what can be said of the answer.
type apiError struct {
	Status    int
	Title     string
	Detail    string
	Errors    []fieldError
	RequestID string
	// Hint, set by a verb, says what to do about it.
	Hint string
}

type fieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Title)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// transportError is a request that got no answer.
type transportError struct {
	method, url string
	err         error
}

func (e *transportError) Error() string { return e.method + " " + e.url + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// url builds the URL of an API path (its segments already escaped).
func (c *client) url(path string, q url.Values) *url.URL {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	return &u
}

// send makes one request. A non-2xx answer is returned as an *apiError
// (its body read and closed); a 2xx answer is the caller's to read.
func (c *client) send(ctx context.Context, method, path string, q url.Values, in any, ifMatch string) (*http.Response, error) {
	u := c.url(path, q)
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "gatehouse-admin")
	if in != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the method and URL, said once below
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s (--timeout)", c.timeout)
		}
		return nil, &transportError{method: method, url: u.Redacted(), err: err}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, answerError(resp)
}

// answerError reads a non-2xx answer into an *apiError.
func answerError(resp *http.Response) *apiError {
	e := &apiError{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
	if e.Title == "" {
		e.Title = "Error"
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err == nil && (mt == "application/problem+json" || mt == "application/json") {
		var p struct {
			Title     string       `json:"title"`
			Detail    string       `json:"detail"`
			RequestID string       `json:"request_id"`
			Errors    []fieldError `json:"errors"`
		}
		if json.Unmarshal(b, &p) == nil {
			if p.Title != "" {
				e.Title = p.Title
			}
			e.Detail, e.RequestID, e.Errors = p.Detail, p.RequestID, p.Errors
			return e
		}
	}
	// Not the API's answer: a proxy or load balancer in front, most likely.
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		e.Detail = "the server redirects to " + resp.Header.Get("Location") + "; the admin API never does: check --url"
	case mt == "":
		e.Detail = "the answer is not the admin API's (no problem details); is --url the deployment's public URL?"
	default:
		e.Detail = fmt.Sprintf("the answer is not the admin API's (%s, not problem details): %s", mt, snippet(b))
	}
	return e
}

// snippet is the start of a foreign answer, safe to print on a terminal.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return clean(s)
}

// do makes a request and reads its JSON answer whole, with its ETag;
// --timeout bounds the whole exchange.
func (c *client) do(ctx context.Context, method, path string, q url.Values, in any, ifMatch string) (body []byte, etag string, err error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := c.send(ctx, method, path, q, in, ifMatch)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, "", &transportError{method: method, url: c.url(path, q).Redacted(), err: fmt.Errorf("reading the answer: %w", err)}
	}
	if len(b) > maxAnswer {
		return nil, "", fmt.Errorf("%s %s: the answer is larger than %d bytes", method, c.url(path, q).Redacted(), maxAnswer)
	}
	if resp.StatusCode != http.StatusNoContent && len(bytes.TrimSpace(b)) > 0 && !json.Valid(b) {
		return nil, "", fmt.Errorf("%s %s: the answer is not JSON: %s", method, c.url(path, q).Redacted(), snippet(b))
	}
	return b, resp.Header.Get("ETag"), nil
}

// errIdle ends a stream that stalled for longer than --timeout.
var errIdle = errors.New("stalled")

// stream opens a GET whose body the caller copies as it comes. --timeout
// bounds the wait for the answer and then each pause in it, not the
// whole transfer: a large export may take longer than any fixed bound.
func (c *client) stream(ctx context.Context, path string, q url.Values) (io.ReadCloser, http.Header, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(c.timeout, func() { cancel(errIdle) })
	}
	resp, err := c.send(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		if timer != nil {
			timer.Stop()
		}
		cause := context.Cause(ctx)
		cancel(nil)
		if errors.Is(cause, errIdle) {
			return nil, nil, &transportError{method: http.MethodGet, url: c.url(path, q).Redacted(), err: fmt.Errorf("no answer within %s (--timeout)", c.timeout)}
		}
		return nil, nil, err
	}
	return &idleReader{rc: resp.Body, ctx: ctx, cancel: cancel, timer: timer, d: c.timeout}, resp.Header, nil
}

// idleReader restarts the stall timer at every read.
type idleReader struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	d      time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if r.timer != nil && n > 0 {
		r.timer.Reset(r.d)
	}
	if err != nil && err != io.EOF && errors.Is(context.Cause(r.ctx), errIdle) {
		err = fmt.Errorf("the stream stalled for %s (--timeout): %w", r.d, err)
	}
	return n, err
}

func (r *idleReader) Close() error {
	if r.timer != nil {
		r.timer.Stop()
	}
	err := r.rc.Close()
	r.cancel(nil)
	return err
}

// clean makes text from the API safe to print in a table on a terminal:
// names and user agents are chosen by others, and a control character
// could rewrite the admin's screen or break the columns.
func clean(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case isControl(r) && r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		case isControl(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isControl(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}

// transportHint says what to check after a request that got no answer.
func transportHint(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "the server's certificate is not from a CA trusted here: for a private or dev CA, pass --cacert FILE"
	case errors.As(err, &hostname):
		return "the server's certificate is not for this host name: check --url"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: check --url, and that Gatehouse runs"
	}
	return ""
}
