package connection

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/netguard"
)

// NewHTTPClient talks to customers' IdPs (discovery, keys, tokens, userinfo,
// SAML metadata): bounded in time and in size, since one customer's IdP
// must not be able to exhaust the memory every customer shares, and never
// redirected to another host or scheme.
func NewHTTPClient() *http.Client { return newHTTPClient(false) }

// NewPublicHTTPClient is NewHTTPClient reaching public addresses only
// (internal/netguard), for IdP URLs an org's admin chose.
func NewPublicHTTPClient() *http.Client { return newHTTPClient(true) }

func newHTTPClient(public bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if public {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: netguard.Control}
		t.DialContext, t.Proxy = d.DialContext, nil
	}
	t.ResponseHeaderTimeout = 10 * time.Second
	t.MaxIdleConnsPerHost = 4
	return &http.Client{Transport: capBodies{t, maxIdPResponse}, Timeout: 15 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 || req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
			return fmt.Errorf("connection: redirect to %s refused (another host or scheme, or too many)", req.URL.Redacted())
		}
		return nil
	}}
}

// maxIdPResponse bounds any one response from an IdP (SAML metadata is
// capped lower by its reader).
const maxIdPResponse = 2 << 20

// capBodies makes reading past max bytes of a response body an error.
type capBodies struct {
	rt  http.RoundTripper
	max int64
}

func (c capBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: c.max, host: req.URL.Host}
	return resp, nil
}

type cappedBody struct {
	io.ReadCloser
	left int64
	host string
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: fine if the body ends here, an error if not.
		var one [1]byte
		if n, _ := b.ReadCloser.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("connection: response from %s is larger than %d bytes", b.host, maxIdPResponse)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
