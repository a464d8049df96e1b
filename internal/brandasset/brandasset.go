// Package brandasset tells what an org's branding file is by its bytes,
// not by its name. A branding file is served from Gatehouse's own origin
// on public sign-in pages, so an HTML page named logo.png, or a font that
// is not a font, must be refused before it is stored, not discovered by a
// browser. Config validation and the server's seeding both use Check, so
// `gatehouse config validate` and `serve` refuse the same files.
package brandasset

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// Spec is one branding file key: the extensions it takes and its size
// limit.
type Spec struct {
	Key  string
	Exts []string
	Max  int64
}

// Files are the branding file keys, in config order.
var Files = []Spec{
	{"logo", []string{".svg", ".png", ".jpg", ".gif", ".webp"}, 256 << 10},
	{"favicon", []string{".svg", ".png", ".ico"}, 64 << 10},
	{"font", []string{".woff2", ".woff", ".ttf", ".otf"}, 512 << 10},
	{"css", []string{".css"}, 64 << 10},
}

// formats: what a file with each extension must be. sniff is the
// format's own signature check; ctype what http.DetectContentType must
// also say ("" where it cannot tell: SVG and CSS are text).
var formats = map[string]struct {
	what, ctype, served string
	sniff               func([]byte) error
}{
	".png":   {"a PNG image", "image/png", "image/png", sniffPNG},
	".jpg":   {"a JPEG image", "image/jpeg", "image/jpeg", prefix("\xff\xd8\xff")},
	".gif":   {"a GIF image", "image/gif", "image/gif", prefix("GIF87a", "GIF89a")},
	".webp":  {"a WebP image", "image/webp", "image/webp", sniffWebP},
	".ico":   {"an ICO icon", "image/x-icon", "image/x-icon", sniffICO},
	".svg":   {"an SVG image", "", "image/svg+xml", sniffSVG},
	".woff2": {"a WOFF2 font", "font/woff2", "font/woff2", prefix("wOF2")},
	".woff":  {"a WOFF font", "font/woff", "font/woff", prefix("wOFF")},
	// "true" is the old Apple TrueType tag, which DetectContentType
	// does not know: the signature alone decides.
	".ttf": {"a TrueType font", "", "font/ttf", prefix("\x00\x01\x00\x00", "true")},
	".otf": {"an OpenType font", "font/otf", "font/otf", prefix("OTTO")},
	".css": {"a CSS file", "", "text/css; charset=utf-8", sniffCSS},
}

// Type is the Content-Type a branding asset with extension ext is served
// with, or "" when ext is not one.
func Type(ext string) string { return formats[ext].served }

// FontFormat is the CSS @font-face format() of a font extension.
func FontFormat(ext string) string {
	return map[string]string{".woff2": "woff2", ".woff": "woff", ".ttf": "truetype", ".otf": "opentype"}[ext]
}

// SpecOf returns the Spec of a branding key.
func SpecOf(key string) (Spec, bool) {
	i := slices.IndexFunc(Files, func(s Spec) bool { return s.Key == key })
	if i < 0 {
		return Spec{}, false
	}
	return Files[i], true
}

// Check reports whether b, the content of the file name, may be the
// branding file key: its extension is one the key takes, its size within
// the key's limit, and its bytes are the format the extension names.
func Check(key, name string, b []byte) error {
	spec, ok := SpecOf(key)
	if !ok {
		return fmt.Errorf("brandasset: unknown branding file %q", key)
	}
	ext := strings.ToLower(filepath.Ext(name))
	if !slices.Contains(spec.Exts, ext) {
		return fmt.Errorf("brandasset: %q: must be one of %s", name, strings.Join(spec.Exts, ", "))
	}
	if int64(len(b)) > spec.Max {
		return fmt.Errorf("brandasset: %q is %d bytes, at most %d", name, len(b), spec.Max)
	}
	f := formats[ext]
	if len(b) == 0 {
		return fmt.Errorf("brandasset: %q is empty, not %s", name, f.what)
	}
	detected := http.DetectContentType(b)
	err := f.sniff(b)
	if err == nil && f.ctype != "" && detected != f.ctype {
		err = errors.New("unexpected signature")
	}
	if err != nil {
		return fmt.Errorf("brandasset: %q is not %s (%v; its content looks like %s)", name, f.what, err, detected)
	}
	return nil
}

// ReadFile reads the branding file key from name: a regular file (not a
// device or a pipe, which could block or never end) of at most the key's
// size limit, read with that limit in case it grows meanwhile.
func ReadFile(key, name string) ([]byte, error) {
	spec, ok := SpecOf(key)
	if !ok {
		return nil, fmt.Errorf("brandasset: unknown branding file %q", key)
	}
	// Stat before opening: opening a pipe blocks until it has a writer.
	if fi, err := os.Stat(name); err != nil {
		return nil, fmt.Errorf("brandasset: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("brandasset: %q is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("brandasset: %w", err)
	}
	defer f.Close()
	// And after: what was opened is what was checked.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("brandasset: %q is not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, spec.Max+1))
	if err != nil {
		return nil, fmt.Errorf("brandasset: %w", err)
	}
	if int64(len(b)) > spec.Max {
		return nil, fmt.Errorf("brandasset: %q is larger than %d bytes", name, spec.Max)
	}
	return b, nil
}

func prefix(sigs ...string) func([]byte) error {
	return func(b []byte) error {
		for _, s := range sigs {
			if bytes.HasPrefix(b, []byte(s)) {
				return nil
			}
		}
		return errors.New("no signature")
	}
}

func sniffPNG(b []byte) error {
	// The signature, then the IHDR chunk, which must come first.
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		return errors.New("no PNG signature")
	}
	if len(b) < 33 || string(b[12:16]) != "IHDR" {
		return errors.New("no IHDR chunk")
	}
	return nil
}

func sniffWebP(b []byte) error {
	if len(b) < 16 || string(b[:4]) != "RIFF" || string(b[8:15]) != "WEBPVP8" {
		return errors.New("no RIFF WEBP signature")
	}
	return nil
}

func sniffICO(b []byte) error {
	// ICONDIR: reserved 0, type 1 (icon, not cursor), then at least one
	// 16-byte directory entry.
	if len(b) < 6 || !bytes.HasPrefix(b, []byte{0, 0, 1, 0}) {
		return errors.New("no ICO signature")
	}
	n := int(binary.LittleEndian.Uint16(b[4:6]))
	if n == 0 || len(b) < 6+16*n {
		return errors.New("no icon directory")
	}
	return nil
}

const svgNS = "http://www.w3.org/2000/svg"

// sniffSVG: well-formed UTF-8 XML with one <svg> root. It refuses what
// makes an SVG a program rather than a picture (scripts, event handlers,
// embedded HTML, javascript: links) and entity declarations (the XML
// bomb), though browsers run none of it in <img>: an SVG opened on its
// own is a document.
func sniffSVG(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not UTF-8")
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 {
					return errors.New("more than one root element")
				}
				if t.Name.Local != "svg" || t.Name.Space != "" && t.Name.Space != svgNS {
					return fmt.Errorf("the root element is <%s>, not <svg>", t.Name.Local)
				}
			}
			switch strings.ToLower(t.Name.Local) {
			case "script", "foreignobject", "iframe", "embed", "object":
				return fmt.Errorf("it has a <%s> element", t.Name.Local)
			}
			for _, a := range t.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") {
					return fmt.Errorf("it has an event handler (%s)", a.Name.Local)
				}
				v := strings.ToLower(strings.Join(strings.Fields(a.Value), ""))
				if strings.HasPrefix(v, "javascript:") {
					return fmt.Errorf("it has a javascript: URL (%s)", a.Name.Local)
				}
				// A logo is self-contained: a reference outside it (an image
				// or font from another site) would track whoever opens it.
				if n := strings.ToLower(a.Name.Local); (n == "href" || n == "src") && v != "" && !strings.HasPrefix(v, "#") && !strings.HasPrefix(v, "data:image/") {
					return fmt.Errorf("it refers to an outside resource (%s=%q)", a.Name.Local, truncate(a.Value, 60))
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text outside the root element")
			}
		case xml.Directive:
			if bytes.Contains(bytes.ToUpper(t), []byte("ENTITY")) {
				return errors.New("it declares entities")
			}
		}
	}
	if roots == 0 {
		return errors.New("no <svg> element")
	}
	low := bytes.ToLower(bytes.Join(bytes.Fields(b), nil))
	for _, ref := range [][]byte{[]byte("@import"), []byte("url(http"), []byte("url('http"), []byte(`url("http`), []byte("url(//"), []byte("url('//"), []byte(`url("//`)} {
		if bytes.Contains(low, ref) {
			return errors.New("its styles refer to an outside resource")
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sniffCSS: UTF-8 text without control characters or HTML. The sheet
// is served as text/css with nosniff, but a "</style><script>" or a page
// saved as .css is not a stylesheet anyone meant to upload.
func sniffCSS(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not UTF-8 text")
	}
	if ct := http.DetectContentType(b); !strings.HasPrefix(ct, "text/plain") {
		return fmt.Errorf("detected as %s", ct)
	}
	line := 1
	for i, c := range b {
		switch {
		case c == '\n':
			line++
		case c < ' ' && c != '\t' && c != '\r' && c != '\f', c == 0x7f:
			return fmt.Errorf("control character %#02x on line %d", c, line)
		case c == '<' && i+1 < len(b) && isTagStart(b[i+1]):
			end := min(i+12, len(b))
			return fmt.Errorf("HTML %q on line %d", b[i:end], line)
		}
	}
	return nil
}

// isTagStart: what may follow "<" to start an HTML tag, end tag,
// comment, doctype or processing instruction.
func isTagStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '/' || c == '!' || c == '?'
}
