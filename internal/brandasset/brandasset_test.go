package brandasset

import (
	"bytes"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// encoded is a real 2×2 image in a format the standard library writes.
func encoded(t *testing.T, enc func(*bytes.Buffer, image.Image) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b, image.NewRGBA(image.Rect(0, 0, 2, 2))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheck(t *testing.T) {
	pngB := encoded(t, func(b *bytes.Buffer, m image.Image) error { return png.Encode(b, m) })
	jpgB := encoded(t, func(b *bytes.Buffer, m image.Image) error { return jpeg.Encode(b, m, nil) })
	gifB := encoded(t, func(b *bytes.Buffer, m image.Image) error { return gif.Encode(b, m, nil) })
	webp := []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")
	ico := append([]byte{0, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 32, 0, 4, 0, 0, 0, 22, 0, 0, 0}, pngB...)
	cursor := append([]byte{0, 0, 2, 0, 1, 0}, make([]byte, 16)...)
	font := func(magic string) []byte { return append([]byte(magic), make([]byte, 60)...) }
	const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>`
	const html = "<!DOCTYPE html><html><body><form action=https://evil.example><input name=password></form></body></html>"

	tests := []struct {
		name, key, file string
		body            []byte
		err             string // "" means accepted
	}{
		// What each key takes.
		{"png logo", "logo", "logo.png", pngB, ""},
		{"jpeg logo", "logo", "logo.JPG", jpgB, ""},
		{"gif logo", "logo", "logo.gif", gifB, ""},
		{"webp logo", "logo", "logo.webp", webp, ""},
		{"svg logo", "logo", "logo.svg", []byte(svg), ""},
		{"svg with a prolog, comment and doctype", "logo", "logo.svg",
			[]byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<!-- Generator: a drawing tool -->\n" + `<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">` + "\n" + svg + "\n"), ""},
		{"ico favicon", "favicon", "favicon.ico", ico, ""},
		{"png favicon", "favicon", "favicon.png", pngB, ""},
		{"woff2 font", "font", "inter.woff2", font("wOF2"), ""},
		{"woff font", "font", "inter.woff", font("wOFF"), ""},
		{"ttf font", "font", "inter.ttf", font("\x00\x01\x00\x00"), ""},
		{"apple ttf font", "font", "inter.ttf", font("true"), ""},
		{"otf font", "font", "inter.otf", font("OTTO"), ""},
		{"css", "css", "extra.css", []byte("\ufeff.card { border-top: 6px solid var(--accent); }\n/* «quotes» */\na:hover { color: #b00020 }\n"), ""},
		{"css with a less-than that is no tag", "css", "extra.css", []byte(".a { width: calc(100% - 2px); } /* a < b */"), ""},

		// A file that is not what its name says.
		{"HTML named .png", "logo", "logo.png", []byte(html), `"logo.png" is not a PNG image`},
		{"HTML named .png, content type named", "logo", "logo.png", []byte(html), "looks like text/html"},
		{"JPEG named .png", "logo", "logo.png", jpgB, "not a PNG image"},
		{"PNG signature without IHDR", "logo", "logo.png", []byte("\x89PNG\r\n\x1a\n<html><script>alert(1)</script>"), "no IHDR chunk"},
		{"PNG named .jpg", "logo", "logo.jpg", pngB, "not a JPEG image"},
		{"text named .gif", "logo", "logo.gif", []byte("GIF is a nice format"), "not a GIF image"},
		{"RIFF WAVE named .webp", "logo", "logo.webp", []byte("RIFF\x1a\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"), "not a WebP image"},
		{"cursor named .ico", "favicon", "favicon.ico", cursor, "not an ICO icon"},
		{"ICO with no directory", "favicon", "favicon.ico", []byte{0, 0, 1, 0, 0, 0}, "no icon directory"},
		{"ICO cut short", "favicon", "favicon.ico", []byte{0, 0, 1, 0, 2, 0, 1, 1}, "no icon directory"},
		{"HTML named .svg", "logo", "logo.svg", []byte(html), "not an SVG image"},
		{"XHTML named .svg", "logo", "logo.svg", []byte(`<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>`), "the root element is <html>, not <svg>"},
		{"svg root in another namespace", "logo", "logo.svg", []byte(`<svg xmlns="http://www.w3.org/1999/xhtml"/>`), "not <svg>"},
		{"SVG that is not well-formed", "logo", "logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><rect></svg>`), "not well-formed XML"},
		{"SVG with a script", "favicon", "icon.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), "<script> element"},
		{"SVG with an event handler", "logo", "logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`), "event handler (onload)"},
		{"SVG with HTML inside", "logo", "logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><form xmlns="http://www.w3.org/1999/xhtml"/></foreignObject></svg>`), "<foreignObject> element"},
		{"SVG with a javascript: link", "logo", "logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink"><a x:href=" java script:alert(1)"><rect/></a></svg>`), "javascript: URL"},
		{"SVG declaring entities", "logo", "logo.svg", []byte(`<!DOCTYPE svg [<!ENTITY a "aaaa">]><svg xmlns="http://www.w3.org/2000/svg"/>`), "declares entities"},
		{"two roots", "logo", "logo.svg", []byte(svg + svg), "more than one root"},
		{"text around the svg", "logo", "logo.svg", []byte("hello " + svg), "text outside the root"},
		{"SVG in UTF-16", "logo", "logo.svg", []byte("\xff\xfe<\x00s\x00v\x00g\x00/\x00>\x00"), "not UTF-8"},
		{"no element at all", "logo", "logo.svg", []byte(`<?xml version="1.0"?>`), "no <svg> element"},
		{"text named .woff2", "font", "inter.woff2", []byte("this is not a font at all, just words"), "not a WOFF2 font"},
		{"HTML named .woff2", "font", "inter.woff2", []byte(html), "looks like text/html"},
		{"WOFF named .woff2", "font", "inter.woff2", font("wOFF"), "not a WOFF2 font"},
		{"OTF named .ttf", "font", "inter.ttf", font("OTTO"), "not a TrueType font"},
		{"ZIP named .otf", "font", "inter.otf", font("PK\x03\x04"), "not an OpenType font"},
		{"HTML named .css", "css", "extra.css", []byte(html), "not a CSS file"},
		{"CSS breaking out of a style element", "css", "extra.css", []byte("body { color: red }\n</style><script>alert(1)</script>"), `HTML "</style><scr" on line 2`},
		{"CSS with an HTML comment", "css", "extra.css", []byte("<!-- hi -->\nbody{}"), "not a CSS file"},
		{"CSS not UTF-8", "css", "extra.css", []byte("body { content: \"\xff\xfe\" }"), "not UTF-8"},
		{"CSS with NUL", "css", "extra.css", []byte("body { }\x00"), "not a CSS file"},
		{"CSS with a control character", "css", "extra.css", []byte("a{}\n\x1b[31m"), "control character 0x1b on line 2"},

		// Names, sizes and emptiness.
		{"font by a name no key takes", "font", "inter.svg", []byte(svg), "must be one of .woff2, .woff, .ttf, .otf"},
		{"logo named .html", "logo", "logo.html", []byte(html), "must be one of"},
		{"empty png", "logo", "logo.png", nil, "is empty, not a PNG image"},
		{"favicon too big", "favicon", "favicon.png", append(pngB, make([]byte, 64<<10)...), "at most 65536"},
		{"unknown key", "banner", "banner.png", pngB, `unknown branding file "banner"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.key, tt.file, tt.body)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "brandasset: ") {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestTypeAndFontFormat(t *testing.T) {
	for ext, want := range map[string]string{".png": "image/png", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".ttf": "font/ttf",
		".css": "text/css; charset=utf-8", ".html": "", ".exe": ""} {
		if got := Type(ext); got != want {
			t.Errorf("Type(%q) = %q, want %q", ext, got, want)
		}
	}
	for ext, want := range map[string]string{".woff2": "woff2", ".woff": "woff", ".ttf": "truetype", ".otf": "opentype", ".png": ""} {
		if got := FontFormat(ext); got != want {
			t.Errorf("FontFormat(%q) = %q, want %q", ext, got, want)
		}
	}
	// Every extension a key takes has a format.
	for _, s := range Files {
		for _, ext := range s.Exts {
			if Type(ext) == "" {
				t.Errorf("%s: %s has no type", s.Key, ext)
			}
		}
	}
}

// FuzzCheck: no input makes Check panic.
func FuzzCheck(f *testing.F) {
	f.Add("logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`))
	f.Add("extra.css", []byte("a{}"))
	f.Add("favicon.ico", []byte{0, 0, 1, 0, 1, 0})
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		for _, s := range Files {
			_ = Check(s.Key, name, b)
		}
	})
}

// ReadFile reads regular files within the key's limit only: a device or
// a pipe named as a logo must not block or stream for ever.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "pipe.png")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key, file string
		n               int // bytes read
		err             string
	}{
		{"a regular file", "logo", write("a.png", 100), 100, ""},
		{"at the limit", "favicon", write("b.png", 64<<10), 64 << 10, ""},
		{"over the limit", "favicon", write("c.png", 64<<10+1), 0, "larger than 65536 bytes"},
		{"a pipe", "logo", fifo, 0, "not a regular file"},
		{"a device", "font", "/dev/zero", 0, "not a regular file"},
		{"a folder", "css", dir, 0, "not a regular file"},
		{"missing", "logo", filepath.Join(dir, "nope.png"), 0, "no such file"},
		{"an unknown key", "banner", write("d.png", 1), 0, "unknown branding file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ReadFile(tt.key, tt.file)
			if tt.err == "" {
				if err != nil || len(b) != tt.n {
					t.Fatalf("%d bytes, %v", len(b), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "brandasset: ") {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

// A logo is self-contained: nothing in it loads from elsewhere.
func TestSVGOutsideReferences(t *testing.T) {
	const head = `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">`
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{head + `<rect width="1" height="1"/></svg>`, true},
		{head + `<use href="#a"/><path id="a" d="M0 0"/></svg>`, true},
		{head + `<image href="data:image/png;base64,iVBORw0KGgo="/></svg>`, true},
		{head + `<image href="https://evil.example/t.png"/></svg>`, false},
		{head + `<image xlink:href="//evil.example/t.png"/></svg>`, false},
		{head + `<image href=" HTTPS://evil.example/t.png"/></svg>`, false},
		{head + `<use href="other.svg#a"/></svg>`, false},
		{head + `<style>@import "https://evil.example/x.css";</style></svg>`, false},
		{head + `<style>rect { fill: url( "https://evil.example/p" ) }</style></svg>`, false},
		{head + `<rect style="fill:url(//evil.example/p)"/></svg>`, false},
		{head + `<image href="data:text/html,hi"/></svg>`, false},
	} {
		err := Check("logo", "logo.svg", []byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.body, err)
		}
	}
}
