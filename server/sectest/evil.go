package sectest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Evil is a loopback listener that stands for every place the server must never
// connect to: an attacker's host, a redirect target, a metadata address. It counts the
// connections it accepts and closes each at once; Checks requires the count to be zero.
type Evil struct {
	ln net.Listener
	n  atomic.Int64
	wg sync.WaitGroup
}

// NewEvil starts the listener on 127.0.0.1, closed when the test ends.
func NewEvil(t testing.TB) *Evil {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sectest: listen for the evil host: %v", err)
	}
	e := &Evil{ln: ln}
	e.wg.Add(1)
	go e.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		e.wg.Wait()
	})
	return e
}

func (e *Evil) accept() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		e.n.Add(1)
		_ = c.Close()
	}
}

// Addr is the listener's host:port.
func (e *Evil) Addr() string { return e.ln.Addr().String() }

// URL is https://<Addr>, for redirects and origins that point at the evil host.
func (e *Evil) URL() string { return "https://" + e.Addr() }

// Connections is how many connections the listener has accepted.
func (e *Evil) Connections() int { return int(e.n.Load()) }
