// Command bareproxy is the load test's baseline: httputil.ReverseProxy
// with Rewrite and the same transport tuning as Gatehouse, nothing else.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address")
	upstream := flag.String("upstream", "http://127.0.0.1:9000", "upstream URL")
	flag.Parse()
	u, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Transport:  proxy.DefaultTransport(),
		BufferPool: proxy.NewBufferPool(),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
	}
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
