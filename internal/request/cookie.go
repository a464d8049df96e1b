package request

import (
	"net/http"
	"strings"
)

// CookieValue returns the value of the first cookie named name in the form
// browsers send it: "name=value" parts separated by ";" (and a space).
// net/http also accepts "name =value", quoted values and more; a
// credential Gatehouse reads must not have spellings that other parsers
// (its own cookie stripping, the upstream's) see differently, so those
// are not its cookies.
func CookieValue(r *http.Request, name string) (string, bool) {
	if name == "" {
		return "", false
	}
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " ")
			v, ok := strings.CutPrefix(part, name)
			if !ok || len(v) < 2 || v[0] != '=' {
				continue
			}
			if v = v[1:]; validCookieValue(v) {
				return v, true
			}
		}
	}
	return "", false
}

// validCookieValue: RFC 6265 cookie-octets, unquoted, not empty.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return v != ""
}

// CookieName returns a Cookie header part's name the way the most lenient
// parser reads it (whitespace around it dropped), for stripping: anything
// any parser could take for one of Gatehouse's cookies is removed.
func CookieName(part string) string {
	name, _, _ := strings.Cut(part, "=")
	return strings.Trim(name, " \t")
}
