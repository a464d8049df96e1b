package apply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// seedBranding checks the bytes it stores as config validation does, so
// a file swapped for another after the config was validated is refused
// at start; a font is announced in its own format.
func TestSeedBrandingChecksContent(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const html = "<html><body><form action=https://evil.example/></form></body></html>"
	const svg = `<svg xmlns="http://www.w3.org/2000/svg"/>`
	fontOf := func(magic string) string { return magic + strings.Repeat("\x00", 40) }
	tests := []struct {
		name string
		b    config.Branding
		err  string // "" means stored
		css  string // in the stored stylesheet
	}{
		{"svg logo and woff2 font", config.Branding{Logo: write("logo.svg", svg), Font: write("a.woff2", fontOf("wOF2"))}, "", `format("woff2")`},
		{"woff font", config.Branding{Font: write("b.woff", fontOf("wOFF"))}, "", `format("woff")`},
		{"ttf font", config.Branding{Font: write("c.ttf", fontOf("\x00\x01\x00\x00"))}, "", `format("truetype")`},
		{"otf font", config.Branding{Font: write("d.otf", fontOf("OTTO"))}, "", `format("opentype")`},
		{"HTML named .png", config.Branding{Logo: write("page.png", html)}, `logo: brandasset: "` + filepath.Join(dir, "page.png") + `" is not a PNG image`, ""},
		{"text named .woff2", config.Branding{Font: write("text.woff2", "not a font, honestly")}, "font: brandasset:", ""},
		{"HTML favicon named .svg", config.Branding{Favicon: write("page.svg", html)}, "favicon: brandasset:", ""},
		{"CSS with HTML", config.Branding{CSS: write("x.css", "a{}</style><script>alert(1)</script>")}, "css: brandasset:", ""},
		{"missing file", config.Branding{Logo: filepath.Join(dir, "nope.png")}, "logo: brandasset: stat", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := seedBranding(ctx, st, &tt.b)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			css, err := BrandAssets(st)(ctx, b.CSS)
			if err != nil || !strings.Contains(string(css), tt.css) || !strings.Contains(string(css), web.BrandPrefix) {
				t.Fatalf("stylesheet %q (%v), want %q", css, err, tt.css)
			}
		})
	}
}
