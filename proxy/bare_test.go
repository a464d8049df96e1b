package proxy_test

import (
	"github.com/gatehouse/gatehouse/proxy"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func newBare(tr http.RoundTripper) *httputil.ReverseProxy {
	u, _ := url.Parse("http://upstream.internal")
	return &httputil.ReverseProxy{Transport: tr, BufferPool: proxy.NewBufferPool(), Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() }}
}
