package sms

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/webhooksig"
)

// The webhook gets the message as JSON with a Standard Webhooks
// signature over its id, time and body; the answer decides: 2xx sent,
// 429/5xx retried, other 4xx refused for good.
func TestSend(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	status := http.StatusAccepted
	var got Message
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
		if r.Header.Get("webhook-signature") != webhooksig.Sign(key, r.Header.Get("webhook-id"), ts, body) || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		_ = json.Unmarshal(body, &got)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL, Key: key, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	m := Message{ID: "msg_1", To: "+14155550123", Text: "Join Acme: https://x", Org: "acme", Kind: "invitation"}
	if err := s.Send(context.Background(), m); err != nil || got != m {
		t.Fatalf("send: %v, got %+v", err, got)
	}
	for _, tc := range []struct {
		status    int
		permanent bool
	}{{429, false}, {503, false}, {408, false}, {302, false}, {400, true}, {404, true}, {401, true}} {
		status = tc.status
		err := s.Send(context.Background(), m)
		var se *StatusError
		if err == nil || errors.Is(err, ErrRefused) != tc.permanent || !errors.As(err, &se) || se.Code != tc.status || strings.Contains(err.Error(), "bad signature") {
			t.Errorf("%d: %v", tc.status, err)
		}
	}
	bad, _ := New(Config{URL: srv.URL, Key: []byte("another key, 32 bytes long......")})
	status = 202
	if err := bad.Send(context.Background(), m); !errors.Is(err, ErrRefused) {
		t.Errorf("a wrong key: %v", err)
	}
}

func TestValidNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"+14155550123": true, "+442071838750": true, "+4915112345678": true,
		"14155550123": false, "+0123456789": false, "+1 415 555 0123": false, "+1415": false,
		"+1234567890123456": false, "": false, "+1415555012a": false, "+14155550123\n": false,
	} {
		if ValidNumber(s) != want {
			t.Errorf("%q: %v", s, !want)
		}
	}
}
