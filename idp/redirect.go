package idp

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/web"
)

// ErrBadRedirect is returned for a post-login target Gatehouse will not
// send a browser to.
var ErrBadRedirect = errors.New("idp: redirect target refused")

// MaxRedirectLen bounds the rd parameter.
const MaxRedirectLen = 2048

// ValidateRedirect returns a safe post-login target or ErrBadRedirect.
// Accepted are a path on the current host ("/x", never "//x" or "/\x"),
// or an absolute http(s) URL whose host Gatehouse serves (serves decides,
// on the lowercased hostname without port). Everything browsers are known
// to read differently from Go's URL parser is refused outright rather than
// normalized: backslashes, whitespace and control characters (raw or
// percent-encoded), scheme-relative and opaque URLs, userinfo.
func ValidateRedirect(raw string, serves func(host string) bool) (string, error) {
	if raw == "" || len(raw) > MaxRedirectLen {
		return "", ErrBadRedirect
	}
	// Check both the raw and the once-decoded form: browsers and upstream
	// frameworks decode at different times.
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return "", ErrBadRedirect
	}
	for _, s := range []string{raw, dec} {
		for _, r := range s {
			if r == '\\' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
				return "", ErrBadRedirect
			}
		}
	}
	if strings.HasPrefix(raw, "/") {
		if strings.HasPrefix(raw, "//") || strings.HasPrefix(dec, "//") || strings.HasPrefix(dec, "/\\") {
			return "", ErrBadRedirect
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			return "", ErrBadRedirect
		}
		return u.String(), nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", ErrBadRedirect
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", ErrBadRedirect
	}
	// The scheme must be spelled in lowercase exactly; "HTTPS:" variants
	// and anything before "://" that is not the scheme are refused.
	if !strings.HasPrefix(raw, u.Scheme+"://") {
		return "", ErrBadRedirect
	}
	host := u.Hostname()
	if !plainHost(host) {
		return "", ErrBadRedirect
	}
	if !serves(host) {
		return "", ErrBadRedirect
	}
	return u.String(), nil
}

// EmailDomain returns the lowercased domain of a syntactically plain
// address ("local@domain"), refusing quoted local parts, comments, several
// "@" and anything that would make two parsers disagree about the domain
// ("a@evil.com@corp.com", "a@corp.com.evil.com" is simply evil.com's).
func EmailDomain(email string) (string, error) {
	if len(email) > 254 || strings.Count(email, "@") != 1 {
		return "", errors.New("idp: not a plain email address")
	}
	local, domain, _ := strings.Cut(email, "@")
	if local == "" || domain == "" || strings.ContainsAny(local, "\"()<>,;:\\[] \t") ||
		// Control and bidi characters, or bytes that are not UTF-8, have
		// no place in an address and no way into a SQL store's text.
		!utf8.ValidString(local) || strings.ContainsFunc(local, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }) {
		return "", errors.New("idp: not a plain email address")
	}
	domain = strings.ToLower(domain)
	if !validDNSName(domain) {
		return "", errors.New("idp: email domain is not a DNS name")
	}
	return domain, nil
}

// plainHost accepts lowercase LDH names with no empty label ("localhost"
// included) and IP literals; nothing a browser might rewrite.
func plainHost(h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		return true
	}
	return validDNSName(h) || h == "localhost"
}

func validDNSName(s string) bool {
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// redirectParam validates rd; on failure it writes the error page.
func (h *Handler) redirectParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw := r.FormValue("rd")
	if raw == "" {
		return "", true
	}
	rd, err := ValidateRedirect(raw, h.o.Serves)
	if err == nil {
		err = h.sameSchemeAndPort(rd)
	}
	if err != nil {
		ref := h.ref()
		// No query string or fragment in logs: they may carry tokens.
		h.o.Logger.Warn("idp: redirect refused", "ref", ref, "rd", truncate(withoutQuery(raw), 200), "host", request.Host(r))
		web.Error(w, http.StatusBadRequest, "The link you followed points somewhere this sign-in page will not send you. Open the application again from its usual address.", ref)
		return "", false
	}
	return rd, true
}

// withoutQuery is a URL (as written) for a log line: its query, fragment
// and path parameters are replaced by "?…" or ";…" (so the log shows there
// were some), and any userinfo by "…@": each may carry a credential.
func withoutQuery(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i] + "?…"
	}
	if i := strings.IndexByte(raw, ';'); i >= 0 {
		raw = raw[:i] + ";…"
	}
	if i := strings.Index(raw, "//"); i >= 0 {
		auth := raw[i+2:]
		if j := strings.IndexAny(auth, "/?;"); j >= 0 {
			auth = auth[:j]
		}
		if k := strings.LastIndexByte(auth, '@'); k >= 0 {
			raw = raw[:i+2] + "…@" + raw[i+2+k+1:]
		}
	}
	return raw
}

// sameSchemeAndPort keeps absolute targets on the public URL's scheme (no
// downgrade to http when it is https) and port: a hand-off ticket must
// not travel in the clear or to another listener on a served host.
func (h *Handler) sameSchemeAndPort(rd string) error {
	u, err := url.Parse(rd)
	if err != nil {
		return ErrBadRedirect
	}
	if u.Host == "" {
		return nil
	}
	pub := h.o.PublicURL
	if u.Scheme != pub.Scheme {
		return ErrBadRedirect
	}
	if portOf(u) != portOf(pub) {
		return ErrBadRedirect
	}
	return nil
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}
