// Command upstream is the load test's application: a minimal HTTP server
// answering every request with a small body.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address")
	flag.Parse()
	body := []byte(`{"ok":true,"items":[1,2,3]}`)
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	log.Fatal(srv.ListenAndServe())
}
