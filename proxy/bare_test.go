package proxy_test

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

func newBare(tr http.RoundTripper) *httputil.ReverseProxy {
	u, _ := url.Parse("http://upstream.internal")
	return &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() }}
}
