// Command go-service is an example backend service of one customer
// (dev mode's demo-service, of Acme): it gets access tokens with client
// credentials, refreshed before they expire by x/oauth2, and calls an API
// with them (examples/apps/go-api).
//
//	CLIENT_SECRET=... go run ./examples/apps/go-service
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func main() {
	or := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	issuer := or("ISSUER", "http://auth.localhost:8080")
	cfg := clientcredentials.Config{ClientID: or("CLIENT_ID", "demo-service"), ClientSecret: os.Getenv("CLIENT_SECRET"),
		TokenURL: issuer + "/.gatehouse/oidc/token", Scopes: strings.Fields(or("SCOPES", "reports.read"))}
	if cfg.ClientSecret == "" {
		log.Fatal("go-service: CLIENT_SECRET is required (dev mode prints demo-service's)")
	}
	base := &http.Client{Timeout: 10 * time.Second}
	if addr := os.Getenv("GATEHOUSE_ADDR"); addr != "" {
		// *.localhost names dialed at Gatehouse (the system resolver may
		// not map them to loopback).
		base.Transport = &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(a); strings.HasSuffix(h, "localhost") {
				a = addr
			}
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, a)
		}}
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	// cfg.Client adds the bearer token to every request, getting a new one
	// when the last expires.
	api := cfg.Client(ctx)
	resp, err := api.Get(or("API_URL", "http://127.0.0.1:5557/whoami"))
	if err != nil {
		log.Fatalf("go-service: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("go-service: the API answered %d: %s", resp.StatusCode, body)
	}
	fmt.Printf("%s", body)
}
