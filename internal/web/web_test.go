package web

import (
	"context"
	"errors"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestPagesAreSelfContainedAndAccessible(t *testing.T) {
	pages := map[string]Page{
		"login":  {Title: "Sign in", OrgName: "Acme <Corp>", Step: "password", CSRF: "tok", Error: "Incorrect email or password.", Email: `"><script>x</script>`},
		"error":  {Title: "Access denied", Error: "No access", Reasons: []string{"needs <admin>"}, Reference: "abc123"},
		"logout": {Title: "Sign out", CSRF: "tok"},
	}
	external := regexp.MustCompile(`(?i)(src|href|action)="(https?:)?//`)
	for name, p := range pages {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Render(rec, 200, name, p)
			body := rec.Body.String()
			if rec.Header().Get("Content-Security-Policy") != CSP || !strings.Contains(CSP, "default-src 'none'") {
				t.Fatal("missing CSP")
			}
			if external.MatchString(body) {
				t.Fatalf("page references another origin:\n%s", body)
			}
			if strings.Contains(body, "<script") {
				t.Fatalf("unescaped input or script in page:\n%s", body)
			}
			for _, want := range []string{`<html lang="en">`, `<main`, `<h1 id="page-title">`} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %s", want)
				}
			}
			if p.Error != "" && !strings.Contains(body, `role="alert"`) {
				t.Error("error not announced to screen readers")
			}
			// Every input has a label.
			for _, m := range regexp.MustCompile(`<input id="([^"]+)"`).FindAllStringSubmatch(body, -1) {
				if !strings.Contains(body, `<label for="`+m[1]+`"`) {
					t.Errorf("input %s has no label", m[1])
				}
			}
		})
	}
}

func TestAssetsHaveETags(t *testing.T) {
	h := Assets(nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", AssetsPrefix+"gatehouse.css", nil))
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || etag == "" || !strings.Contains(rec.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("css: %d %q %q", rec.Code, etag, rec.Header().Get("Content-Type"))
	}
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", AssetsPrefix+"gatehouse.css", nil)
	req.Header.Set("If-None-Match", etag)
	h.ServeHTTP(rec, req)
	if rec.Code != 304 {
		t.Fatalf("conditional GET: %d", rec.Code)
	}
	for _, p := range []string{"../web.go", "nope.css", "", "templates/login.html"} {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", AssetsPrefix+p, nil))
		if rec.Code != 404 {
			t.Errorf("%q: %d", p, rec.Code)
		}
	}
}

func TestBrandAssets(t *testing.T) {
	blobs := map[string][]byte{"0123abcd.svg": []byte("<svg/>"), "89efcafe.css": []byte(":root{--accent:#123456}")}
	h := Assets(func(_ context.Context, name string) ([]byte, error) {
		if b, ok := blobs[name]; ok {
			return b, nil
		}
		return nil, errors.New("not found")
	})
	get := func(p string, hdr ...string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", BrandPrefix+p, nil)
		if len(hdr) == 2 {
			req.Header.Set(hdr[0], hdr[1])
		}
		h.ServeHTTP(rec, req)
		return rec
	}
	r := get("0123abcd.svg")
	if r.Code != 200 || r.Header().Get("Content-Type") != "image/svg+xml" || r.Header().Get("ETag") != `"0123abcd"` ||
		!strings.Contains(r.Header().Get("Cache-Control"), "immutable") || r.Header().Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(r.Header().Get("Content-Security-Policy"), "sandbox; default-src 'none'") {
		t.Fatalf("svg: %d %v", r.Code, r.Header())
	}
	if r := get("0123abcd.svg", "If-None-Match", `"0123abcd"`); r.Code != 304 {
		t.Fatalf("conditional: %d", r.Code)
	}
	if r := get("89efcafe.css"); r.Code != 200 || !strings.HasPrefix(r.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("css: %d", r.Code)
	}
	for _, p := range []string{"missing.svg", "0123abcd.html", "../x.svg", "a/b.svg", "0123abcd"} {
		if r := get(p); r.Code != 404 {
			t.Errorf("%q: %d", p, r.Code)
		}
	}
	// Every branding format is served with its own type, nothing else.
	for ext, want := range map[string]string{".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
		".ico": "image/x-icon", ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf", ".otf": "font/otf",
		".html": "", ".js": "", ".xml": "", ".jpeg": ""} {
		blobs["feed"+ext] = []byte("x")
		r := get("feed" + ext)
		if want == "" && r.Code != 404 || want != "" && (r.Code != 200 || r.Header().Get("Content-Type") != want) {
			t.Errorf("%s: %d %q, want %q", ext, r.Code, r.Header().Get("Content-Type"), want)
		}
	}
}
