package proxy

import (
	"errors"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"
)

// ErrBadPath is returned for request paths Gatehouse refuses to interpret.
// Refusing is safer than guessing how an upstream would read them.
var ErrBadPath = errors.New("proxy: ambiguous request path")

// CanonicalPath turns the raw (escaped) request path into the one form
// that routing, public_paths and the upstream all see. It decodes escapes
// of ordinary characters (so "%2e%2e" is ".."), resolves "." and "..",
// and collapses "//". It refuses what different servers read differently,
// so that the path Gatehouse matches and the resource the upstream serves
// are the same one:
//   - encoded "/" or "\", a literal "\", NUL and control bytes, "#", and
//     invalid escapes;
//   - ";params" where servers disagree: on a dot segment (Tomcat reads
//     "..;" as ".."), a segment made only of params ("/;x/admin" is
//     "/admin" to Tomcat, which drops params and then empty segments), and
//     an encoded ";" ("%3B" is data to some servers, a separator to others);
//   - "%25" before two hex digits: a server that decodes twice reads
//     "%2561" as "a";
//   - bytes that are not UTF-8 once decoded (overlong forms of "." or "/"),
//     and characters that case mapping or compatibility normalization turns
//     into ASCII ("ı" and "ſ" are "I" and "S" to Java's equalsIgnoreCase,
//     "／" is "/" after NFKC): upstreams that fold case or normalize would
//     read another path than the one routes and policies matched.
//
// It returns the decoded path and its escaped form.
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
			case d == '/' || d == '\\' || d == ';' || d < 0x20 || d == 0x7f:
				return "", "", ErrBadPath
			case d == '%' || d == '?' || d == '#':
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
	// "%25" then two hex digits (however they were spelled): an upstream
	// that decodes twice reads another byte ("%2561" is "a", "%252e" ".").
	for i := strings.Index(dec, "%25"); i >= 0; {
		if i+4 < len(dec) && ishex(dec[i+3]) && ishex(dec[i+4]) {
			return "", "", ErrBadPath
		}
		j := strings.Index(dec[i+3:], "%25")
		if j < 0 {
			break
		}
		i += 3 + j
	}
	if !asciiSafe(dec) {
		return "", "", ErrBadPath
	}

	// Resolve segments. A trailing slash is kept: upstreams distinguish
	// "/dir" from "/dir/".
	segs := strings.Split(dec[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		if s != "." && s != ".." && (isDotSegment(s) || windowsAlias(s)) || strings.HasPrefix(s, ";") {
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
	// p holds only the escapes kept above ("%25", "%3F", "%23");
	// the escaped form keeps them and escapes what a path must not hold.
	decoded, err := url.PathUnescape(p)
	if err != nil {
		return "", "", ErrBadPath
	}
	return decoded, escapePath(p), nil
}

// windowsAlias reports whether a segment names another file on Windows
// (IIS, ASP.NET, Tomcat on Windows) than it spells: a trailing dot or
// space is dropped ("admin." is "admin"), ":$" opens a stream of the file
// ("admin::$DATA"), and "~" before a digit is an 8.3 short name
// ("ADMINI~1" for "administration").
func windowsAlias(s string) bool {
	name, _, _ := strings.Cut(s, ";")
	if name == "" {
		return false
	}
	if c := name[len(name)-1]; c == '.' || c == ' ' {
		return true
	}
	if strings.Contains(name, ":$") {
		return true
	}
	for i := strings.IndexByte(name, '~'); i >= 0 && i+1 < len(name); {
		if '0' <= name[i+1] && name[i+1] <= '9' {
			return true
		}
		j := strings.IndexByte(name[i+1:], '~')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
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

// asciiSafe reports whether a decoded path is UTF-8 with no character
// that some server would turn into ASCII: by case mapping (Unicode's, as
// Java's equalsIgnoreCase and .NET's OrdinalIgnoreCase do) or by
// compatibility normalization (NFKC, as IIS's best-fit mapping and many
// frameworks do). Everything else non-ASCII (é, 日本) is kept.
func asciiSafe(p string) bool {
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if foldsToASCII(r) {
			return false
		}
		i += n
	}
	return true
}

// foldsToASCII reports whether a non-ASCII rune becomes ASCII under some
// case mapping or fold, simple ("ı" → "I") or full ("ß" → "SS", as Java's
// toUpperCase and Python's casefold do), has ASCII in its NFKC form, or
// is one that Windows' best-fit conversion turns into a path separator
// or dot.
func foldsToASCII(r rune) bool {
	if unicode.ToLower(r) < utf8.RuneSelf || unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToTitle(r) < utf8.RuneSelf {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return true
		}
	}
	if _, ok := bestFit[r]; ok {
		return true
	}
	s := string(r)
	for _, m := range []string{norm.NFKC.String(s), cases.Upper(language.Und).String(s), cases.Lower(language.Und).String(s), cases.Fold().String(s)} {
		for i := 0; i < len(m); i++ {
			if m[i] < utf8.RuneSelf {
				return true
			}
		}
	}
	return false
}

// bestFit are characters that Windows' best-fit mapping to an ANSI code
// page turns into path structure ("∕" into "/", "¥" into "\\" in the
// Japanese code page) and that NFKC leaves be.
var bestFit = map[rune]byte{
	0x2215: '/', 0x2044: '/', 0x29F8: '/', // division slash, fraction slash, big solidus
	0x2216: '\\', 0x29F9: '\\', 0x00A5: '\\', 0x20A9: '\\', // set minus, big reverse solidus, yen, won
	0x2236: ':', // ratio
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

// StripParams removes ";params" from every segment of a canonical path:
// the path routes and public_paths match, as servlet containers (Tomcat,
// Jetty, Undertow, Spring) read it. A segment left empty is dropped, as
// they drop it (CanonicalPath refuses such segments anyway), so the result
// is canonical too.
func StripParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	out := segs[:1]
	for i, s := range segs[1:] {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			s = s[:j]
		}
		if s != "" || i == len(segs)-2 {
			out = append(out, s)
		}
	}
	if len(out) == 1 {
		return "/"
	}
	return strings.Join(out, "/")
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
