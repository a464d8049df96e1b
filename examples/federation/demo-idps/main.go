// Command demo-idps runs two identity providers on this machine for trying
// Gatehouse's federation by hand (examples/federation/README.md): an OpenID
// Provider (zitadel/oidc's example OP) and a SAML IdP (crewjam/saml's
// samlidp), with demo people, plus an upstream app that shows what it
// receives. Loopback only; not for anything but a demo.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

func main() {
	var (
		oidcAddr  = flag.String("oidc", "127.0.0.1:9998", "OpenID Provider listen address (its issuer is http://ADDR)")
		samlAddr  = flag.String("saml", "127.0.0.1:9997", "SAML IdP listen address")
		upAddr    = flag.String("upstream", "127.0.0.1:9000", "demo app listen address")
		gatehouse = flag.String("gatehouse", "http://auth.localhost:8080", "Gatehouse's public_url")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *oidcAddr, *samlAddr, *upAddr, *gatehouse, log.Printf); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx ends. logf reports progress.
func run(ctx context.Context, oidcAddr, samlAddr, upAddr, gatehouse string, logf func(string, ...any)) error {
	pub, err := url.Parse(gatehouse)
	if err != nil || pub.Host == "" {
		return fmt.Errorf("demo-idps: -gatehouse %q is not a URL", gatehouse)
	}
	issuer := "http://" + oidcAddr
	op := testidp.OIDCHandler(issuer, "gatehouse-demo", "demo-secret", []string{pub.Scheme + "://" + pub.Host + "/.gatehouse/callback"},
		testidp.User{ID: "alice", Username: "alice", Password: "alice-demo-pw", Email: "alice@oidc-demo.example", EmailVerified: true,
			First: "Alice", Last: "Admin", Groups: []string{"admins"}})
	samlURL, _ := url.Parse("http://" + samlAddr)
	idp, _, _, err := testidp.NewSAMLServer(*samlURL,
		testidp.SAMLUser{Name: "bob", Password: "bob-demo-pw", Email: "bob@saml-demo.example", GivenName: "Bob", Surname: "Builder", Groups: []string{"staff"}})
	if err != nil {
		return err
	}
	servers := []*http.Server{
		{Addr: oidcAddr, Handler: op, ReadHeaderTimeout: 10 * time.Second},
		{Addr: samlAddr, Handler: idp, ReadHeaderTimeout: 10 * time.Second},
		{Addr: upAddr, Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 10 * time.Second},
	}
	errs := make(chan error, len(servers)+1)
	for _, s := range servers {
		l, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return err
		}
		go func() { errs <- s.Serve(l) }()
	}
	logf("OpenID Provider at %s (sign in as alice / alice-demo-pw)", issuer)
	logf("SAML IdP at %s (sign in as bob / bob-demo-pw)", samlURL)
	logf("demo app at http://%s", upAddr)
	// The SAML IdP's admin loads Gatehouse's SP metadata once Gatehouse runs.
	go func() { errs <- registerSP(ctx, pub, samlURL.String(), logf) }()
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	if errors.Is(first, http.ErrServerClosed) {
		first = nil
	}
	return first
}

// registerSP waits for Gatehouse and uploads the saml-demo org's SP
// metadata to the SAML IdP. samlidp's own login form re-posts requests
// without their redirect signature, so the demo registers the SP as not
// signing requests; real IdPs take the signed requests as they are.
func registerSP(ctx context.Context, pub *url.URL, idpURL string, logf func(string, ...any)) error {
	md := pub.Scheme + "://" + pub.Host + "/.gatehouse/saml/metadata/saml-demo"
	// *.localhost names are this machine, whatever the resolver says.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, p, _ := net.SplitHostPort(addr); strings.HasSuffix(h, ".localhost") {
			addr = net.JoinHostPort("127.0.0.1", p)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	for {
		resp, err := client.Get(md)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == 200 {
				b = []byte(strings.Replace(string(b), `AuthnRequestsSigned="true"`, `AuthnRequestsSigned="false"`, 1))
				if err := testidp.RegisterSP(idpURL, "gatehouse-saml-demo", b); err != nil {
					return err
				}
				logf("SAML IdP: registered Gatehouse's SP from %s", md)
				<-ctx.Done()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// echo shows the identity Gatehouse forwarded.
func echo(w http.ResponseWriter, r *http.Request) {
	h := map[string]string{}
	var keys []string
	for k := range r.Header {
		if strings.HasPrefix(k, "X-Gatehouse-") && k != "X-Gatehouse-Jwt-Assertion" {
			h[k] = r.Header.Get(k)
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"path": r.URL.Path, "identity": h, "assertion": r.Header.Get("X-Gatehouse-Jwt-Assertion") != ""})
}
