package idp

import (
	"context"
	"os"
	"testing"

	"github.com/gatehouse/gatehouse/internal/web"
)

// A preview inlines only branding images, read from the store by name.
func TestBrandImage(t *testing.T) {
	blobs := map[string][]byte{"ab.svg": []byte("<svg/>"), "cd.css": []byte("a{}"), "ef.png": []byte("png")}
	src := func(_ context.Context, name string) ([]byte, error) {
		if b, ok := blobs[name]; ok {
			return b, nil
		}
		return nil, os.ErrNotExist
	}
	tests := []struct {
		src, ctype string // ctype "" means not inlined
	}{
		{"https://login.acme.com" + web.BrandPrefix + "ab.svg", "image/svg+xml"},
		{"http://auth.localhost:8080" + web.BrandPrefix + "ef.png", "image/png"},
		{"https://login.acme.com" + web.BrandPrefix + "cd.css", ""},
		{"https://login.acme.com" + web.BrandPrefix + "missing.png", ""},
		{"https://login.acme.com" + web.BrandPrefix + "x/../ab.svg", ""},
		{"https://login.acme.com/.gatehouse/assets/favicon.svg", ""},
		{"https://evil.example/pixel.png", ""},
		{"::not a url", ""},
	}
	for _, tt := range tests {
		b, ctype, ok := brandImage(context.Background(), src, tt.src)
		if ok != (tt.ctype != "") || ctype != tt.ctype || ok && len(b) == 0 {
			t.Errorf("%s: %q %q %v, want %q", tt.src, b, ctype, ok, tt.ctype)
		}
	}
}
