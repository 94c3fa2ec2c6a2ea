package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
)

// benchSecret has the length and alphabet of a real access token (a JWT), with a '/'
// so that the guard looks for two forms, as it must for some tokens.
var benchSecret = "eyJhbGciOiJIUzI1NiJ9." + strings.Repeat("eyJzdWIiOiJhbGljZSJ9", 8) +
	".sig/abc"

var benchSizes = []int{1 << 10, 16 << 10, 64 << 10}

// audioLike is n bytes of 16-bit PCM-looking data, rich in the bytes tokens use.
func audioLike(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>7)
	}
	return b
}

func benchProxy(b *testing.B) *Proxy {
	b.Helper()
	sealer, err := seal.NewRandom()
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{Upstream: "http://127.0.0.1:1", Version: "2026-03-01",
		Sealer: sealer, Sessions: session.NewMemory(session.MemoryConfig{})})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkEchoCheck is the check alone on one upstream WebSocket message.
func BenchmarkEchoCheck(b *testing.B) {
	g := newEchoGuard(benchSecret)
	for _, size := range benchSizes {
		msg := audioLike(size)
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if g.found(msg) {
					b.Fatal("false positive")
				}
			}
		})
	}
}

// BenchmarkRelayMessage is the relay's per-message path end to end: an upstream
// WebSocket writes binary messages as fast as it can, the relay (two loopback
// connections) passes them on, and the browser side reads them. One op is one message.
// check=off runs the same relay without a token, so without the check.
func BenchmarkRelayMessage(b *testing.B) {
	for _, size := range benchSizes {
		for _, check := range []bool{false, true} {
			name := fmt.Sprintf("size=%dKiB/check=%s", size>>10, map[bool]string{
				false: "off", true: "on"}[check])
			b.Run(name, func(b *testing.B) {
				secret := ""
				if check {
					secret = benchSecret
				}
				benchRelay(b, size, secret)
			})
		}
	}
}

func benchRelay(b *testing.B, size int, secret string) {
	p := benchProxy(b)
	msg := audioLike(size)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for c.Write(ctx, websocket.MessageBinary, msg) == nil {
		}
	}))
	defer upstream.Close()

	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		up, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(upstream.URL, "http"),
			&websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		up.SetReadLimit(1 << 20)
		client, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			_ = up.CloseNow()
			return
		}
		newRelay(p, client, up, secret).run()
	}))
	defer front.Close()

	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(front.URL, "http"),
		&websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)

	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		_, r, err := c.Reader(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != int64(size) {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}

// BenchmarkStreamCopy is relayStream, the copy loop of /tts/bytes and upload answers:
// one op is one upstream read of size bytes passed to the client (a writer that keeps
// nothing), with the echo check and its held-back carry, or without.
func BenchmarkStreamCopy(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, copyBuffer} {
		for _, check := range []bool{false, true} {
			name := fmt.Sprintf("read=%dKiB/check=%s", size>>10, map[bool]string{
				false: "off", true: "on"}[check])
			b.Run(name, func(b *testing.B) {
				p := benchProxy(b)
				rt := Routes()[0]
				c := &call{p: p, rt: rt, route: "/cartesia" + rt.Path}
				if check {
					c.guard = newEchoGuard(benchSecret)
				}
				body := &reads{chunk: audioLike(size), left: b.N}
				resp := &http.Response{StatusCode: 200, Body: io.NopCloser(body),
					Header: http.Header{"Content-Type": {"audio/wav"}}}
				w := &discard{header: http.Header{}}
				r := httptest.NewRequest(http.MethodPost, "/cartesia/tts/bytes", nil)

				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				c.relayStream(w, r, resp)
				b.StopTimer()
				if w.n != int64(size)*int64(b.N) {
					b.Fatalf("relayed %d bytes, want %d", w.n, int64(size)*int64(b.N))
				}
			})
		}
	}
}

// reads is an upstream body of left reads of chunk.
type reads struct {
	chunk []byte
	left  int
}

func (r *reads) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	r.left--
	return copy(p, r.chunk), nil
}

// discard is a ResponseWriter that counts and keeps nothing. Like net/http's own, it
// supports flushes and write deadlines.
type discard struct {
	header http.Header
	n      int64
}

func (d *discard) Header() http.Header              { return d.header }
func (d *discard) WriteHeader(int)                  {}
func (d *discard) FlushError() error                { return nil }
func (d *discard) SetWriteDeadline(time.Time) error { return nil }
func (d *discard) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	return len(p), nil
}
