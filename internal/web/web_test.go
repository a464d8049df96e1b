package web

import (
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
	h := Assets()
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
