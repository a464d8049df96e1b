// Package sms sends text messages through an HTTP webhook: Gatehouse
// speaks no SMS provider's API. The operator points sms.webhook.url at a
// small relay of theirs (or a provider that takes webhooks) which turns
// each signed request into a text through Twilio, Vonage, SNS or a
// gateway. The request is documented in docs/notifications.md.
package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/gatehouse/gatehouse/internal/webhooksig"
)

// Message is one text: its ID (stable across retries, the webhook-id and
// the receiver's idempotency key), the number, the text, and what it is.
type Message struct {
	ID   string `json:"id"`
	To   string `json:"to"`
	Text string `json:"text"`
	// Org is the org's slug, Kind the message (invitation, …).
	Org  string `json:"org"`
	Kind string `json:"kind"`
}

// Config is where texts go.
type Config struct {
	URL string
	// Key is the decoded "whsec_" secret the requests are signed with.
	Key     []byte
	Timeout time.Duration // default 10s
	Now     func() time.Time
}

// Sender posts texts to the webhook.
type Sender struct {
	c      Config
	client *http.Client
}

// New makes a Sender.
func New(c Config) (*Sender, error) {
	if c.URL == "" || len(c.Key) == 0 {
		return nil, errors.New("sms: the webhook needs a url and a secret")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// Redirects are answers, never followed (a 3xx is retried: see Send).
	client := &http.Client{Timeout: c.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Sender{c: c, client: client}, nil
}

// ErrRefused wraps a refusal the receiver made for good (a 4xx other
// than 408, 425 and 429): retrying would not help.
var ErrRefused = errors.New("sms: the webhook refused the message")

// Send posts m. A 2xx answer is delivered; 3xx, 408, 425, 429, 5xx and
// network errors are worth retrying; any other answer is ErrRefused (a
// *StatusError either way).
func (s *Sender) Send(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("sms: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sms: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Gatehouse-SMS")
	webhooksig.SetHeaders(req.Header, s.c.Key, m.ID, s.c.Now().Unix(), body)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("sms: webhook: %w", err)
	}
	defer resp.Body.Close()
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	// 3xx: a misconfigured URL, which the operator may fix within the
	// retry period; 408, 425, 429, 5xx: the relay's trouble, passing.
	return &StatusError{Code: code, Body: string(bytes.TrimSpace(detail)),
		Permanent: code >= 400 && code < 500 && code != 408 && code != 425 && code != 429}
}

// StatusError is the webhook's answer to a text it did not take. Its
// message has the status only: the relay's body (Body, for the
// operator's log) stays out of org audit trails.
type StatusError struct {
	Code      int
	Body      string
	Permanent bool
}

func (e *StatusError) Error() string { return fmt.Sprintf("sms: webhook answered %d", e.Code) }

// Unwrap makes a permanent refusal ErrRefused.
func (e *StatusError) Unwrap() error {
	if e.Permanent {
		return ErrRefused
	}
	return nil
}

// e164 is a phone number in E.164: "+", a country code, at most 15
// digits in all.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// ValidNumber reports whether s is an E.164 number.
func ValidNumber(s string) bool { return e164.MatchString(s) }
