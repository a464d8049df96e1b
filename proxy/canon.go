package proxy

import (
	"errors"
	"net/url"
	"strings"
)

// ErrBadPath is returned for request paths Gatehouse refuses to interpret.
// Refusing is safer than guessing how an upstream would read them.
var ErrBadPath = errors.New("proxy: ambiguous request path")

// CanonicalPath turns the raw (escaped) request path into the one form
// that routing, public_paths and the upstream all see. It decodes escapes
// of ordinary characters (so "%2e%2e" is ".."), resolves "." and "..",
// and collapses "//". It refuses what different servers read differently:
// encoded "/" or "\", a literal "\", NUL and control bytes, "#", a
// dot-segment carrying ";params" (Tomcat reads "..;" as ".."), and
// invalid escapes. It returns the decoded path and its escaped form.
func CanonicalPath(raw string) (path, escaped string, err error) {
	if raw == "" {
		return "/", "/", nil
	}
	if raw[0] != '/' {
		return "", "", ErrBadPath
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !ishex(raw[i+1]) || !ishex(raw[i+2]) {
				return "", "", ErrBadPath
			}
			d := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			// Keep these escaped: decoding would change the path's structure.
			switch {
			case d == '/' || d == '\\' || d < 0x20 || d == 0x7f:
				return "", "", ErrBadPath
			case d == '%' || d == '?' || d == '#' || d == ';':
				b.WriteString(raw[i : i+3])
			default:
				b.WriteByte(d)
			}
			i += 2
		case c == '\\' || c == '#' || c < 0x20 || c == 0x7f:
			return "", "", ErrBadPath
		default:
			b.WriteByte(c)
		}
	}
	dec := b.String()
	// "%25" then an escape of "." "/" "\" (however it was spelled): an
	// upstream that decodes twice would read a dot segment or a separator.
	for i := strings.Index(dec, "%25"); i >= 0; {
		if r := strings.ToLower(dec[i+3:]); strings.HasPrefix(r, "2e") || strings.HasPrefix(r, "2f") || strings.HasPrefix(r, "5c") {
			return "", "", ErrBadPath
		}
		j := strings.Index(dec[i+3:], "%25")
		if j < 0 {
			break
		}
		i += 3 + j
	}

	// Resolve segments. A trailing slash is kept: upstreams distinguish
	// "/dir" from "/dir/".
	segs := strings.Split(dec[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		if s != "." && s != ".." && isDotSegment(s) {
			return "", "", ErrBadPath
		}
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	p := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		p += "/"
	}
	// p holds only the escapes kept above ("%25", "%3F", "%23", "%3B");
	// the escaped form keeps them and escapes what a path must not hold.
	decoded, err := url.PathUnescape(p)
	if err != nil {
		return "", "", ErrBadPath
	}
	return decoded, escapePath(p), nil
}

// isDotSegment reports whether a segment is read as "." or ".." by some
// server once its escapes are decoded and its ";params" dropped.
func isDotSegment(s string) bool {
	full, err := url.PathUnescape(s)
	if err != nil {
		return true
	}
	name, _, _ := strings.Cut(full, ";")
	return name == "." || name == ".."
}

func escapePath(p string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%' && i+2 < len(p):
			b.WriteString(p[i : i+3])
			i += 2
		case pathSafe(c):
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
		}
	}
	return b.String()
}

// pathSafe: RFC 3986 pchar plus "/", minus "%".
func pathSafe(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// HasPathPrefix reports whether path is prefix or below it, at a segment
// boundary: "/healthz" covers "/healthz" and "/healthz/x", never
// "/healthzx" or "/healthz;x".
func HasPathPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}
