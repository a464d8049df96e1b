package proxy

import (
	"net/http/httputil"
	"sync"
)

// bufferPool reuses ReverseProxy's copy buffers; without it every
// proxied response allocates 32 KiB.
type bufferPool struct{ p sync.Pool }

// NewBufferPool returns a pool of 32 KiB buffers for httputil.ReverseProxy.
func NewBufferPool() httputil.BufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(s []byte) { b.p.Put(&s) }
