package connection

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestIdPClientLimits(t *testing.T) {
	big := strings.Repeat("x", maxIdPResponse+1)
	mux := http.NewServeMux()
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	mux.HandleFunc("/exact", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big[:maxIdPResponse]) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest", http.StatusFound)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/exact", http.StatusFound) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := NewHTTPClient()
	read := func(path string) (int, error) {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return len(b), err
	}
	if _, err := read("/huge"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized response: %v", err)
	}
	if n, err := read("/exact"); err != nil || n != maxIdPResponse {
		t.Fatalf("response at the limit: %d, %v", n, err)
	}
	if _, err := read("/away"); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("redirect to another host: %v", err)
	}
	if n, err := read("/here"); err != nil || n != maxIdPResponse {
		t.Fatalf("redirect on the same host: %d, %v", n, err)
	}
}
