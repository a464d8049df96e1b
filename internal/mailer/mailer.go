// Package mailer sends the orgs' messages by SMTP (wneessen/go-mail):
// STARTTLS (required, never downgraded) or implicit TLS, with
// authentication; plain SMTP only to this machine (a local relay).
package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/gatehouse/gatehouse/idp/notify"
)

// TLS modes.
const (
	StartTLS = "starttls"
	Implicit = "implicit"
	None     = "none"
)

// Config is where and how messages are sent.
type Config struct {
	Host string
	// Port defaults to 587 (starttls), 465 (implicit) or 25 (none).
	Port               int
	Username, Password string
	// TLS is starttls (default), implicit, or none (a relay on this
	// machine only).
	TLS string
	// From is the sender, as "Name <address>" or an address.
	From string
	// Timeout bounds one delivery (default 10s).
	Timeout time.Duration
	// TLSConfig verifies the server (nil: the system's CAs and the host name).
	TLSConfig *tls.Config
}

// Problem says what is wrong with c ("" if nothing).
func (c Config) Problem() string {
	switch {
	case c.Host == "":
		return "smtp.host is required"
	case c.TLS != "" && c.TLS != StartTLS && c.TLS != Implicit && c.TLS != None:
		return fmt.Sprintf("smtp.tls %q: use starttls, implicit or none", c.TLS)
	case c.TLS == None && !loopback(c.Host):
		return "smtp.tls none sends mail and passwords in the clear: only to a relay on this machine (127.0.0.1, ::1, localhost)"
	case c.Port < 0 || c.Port > 65535:
		return "smtp.port must be from 1 to 65535"
	}
	if _, err := netmail.ParseAddress(c.From); err != nil {
		return fmt.Sprintf("from %q is not an email address: %v", c.From, err)
	}
	return ""
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Sender sends messages.
type Sender struct{ c Config }

// New checks c and returns its sender.
func New(c Config) (*Sender, error) {
	if p := c.Problem(); p != "" {
		return nil, errors.New("mailer: " + p)
	}
	if c.TLS == "" {
		c.TLS = StartTLS
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Port == 0 {
		c.Port = map[string]int{StartTLS: 587, Implicit: 465, None: 25}[c.TLS]
	}
	return &Sender{c: c}, nil
}

// Send delivers m to one person.
func (s *Sender) Send(ctx context.Context, to string, m notify.Message) error {
	msg := mail.NewMsg()
	if err := msg.From(s.c.From); err != nil {
		return fmt.Errorf("mailer: from: %w", err)
	}
	if err := msg.To(to); err != nil {
		return fmt.Errorf("mailer: to %q: %w", to, err)
	}
	msg.Subject(strings.ReplaceAll(m.Subject, "\n", " "))
	msg.SetBodyString(mail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, m.HTML)
	}
	opts := []mail.Option{mail.WithPort(s.c.Port), mail.WithTimeout(s.c.Timeout)}
	switch s.c.TLS {
	case Implicit:
		opts = append(opts, mail.WithSSL())
	case None:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.c.TLSConfig != nil {
		opts = append(opts, mail.WithTLSConfig(s.c.TLSConfig))
	}
	if s.c.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(s.c.Username), mail.WithPassword(s.c.Password))
	}
	client, err := mail.NewClient(s.c.Host, opts...)
	if err != nil {
		return fmt.Errorf("mailer: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mailer: send to %s via %s:%d: %w", to, s.c.Host, s.c.Port, err)
	}
	return nil
}
