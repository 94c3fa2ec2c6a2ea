package proxy_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/token"
)

// TestUploadBelowTheMinimumRateIsCut is the spool-filling attack: an upload that sends
// most of its body at once and then trickles (or stalls) holds its spool only until the
// first rate window that brings too little, not for the whole upload timeout. The pause
// and whole-upload limits are set far beyond the test's reach, so only the rate rule
// can answer within readRaw's 10 s: 408 request_timeout, nothing upstream, the spool
// freed.
func TestUploadBelowTheMinimumRateIsCut(t *testing.T) {
	tests := []struct {
		name    string
		trickle time.Duration // one byte this often after the burst; 0 sends nothing more
	}{
		{"a burst, then a trickle", 20 * time.Millisecond},
		{"a burst, then a stall", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, dir := spoolHarness(t, func(c *proxy.Config) {
				c.BodyTimeout, c.UploadTimeout = time.Minute, 10*time.Minute
				c.UploadMinRate, c.UploadRateWindow = 64<<10, 200*time.Millisecond
			})
			up := h.countUpstream()
			conn := h.rawPost("/cartesia/stt", token.STT, fmt.Sprintf(
				"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n",
				20<<20), "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n")
			if _, err := conn.Write(make([]byte, 400<<10)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the burst to reach the disk", func() bool {
				return h.proxy.SpoolFiles() == 1
			})
			stop := make(chan struct{})
			defer close(stop)
			if tt.trickle > 0 {
				go func() {
					tick := time.NewTicker(tt.trickle)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							if _, err := conn.Write([]byte{0}); err != nil {
								return
							}
						}
					}
				}()
			}

			resp, b := h.readRaw(conn, http.MethodPost, "/cartesia/stt")
			if resp.StatusCode != http.StatusRequestTimeout ||
				errorCode(t, b).Code != "request_timeout" {
				t.Errorf("got %d %s, want 408 request_timeout", resp.StatusCode, b)
			}
			up.sawNothing(t)
			checkSpoolGone(t, h, dir)
			waitFor(t, "the proxy event", func() bool {
				return len(h.logs.Matching(t, "proxy",
					map[string]string{"note": "upload_too_slow", "status": "408"})) == 1
			})
		})
	}
}

// TestUploadAboveTheMinimumRatePasses: a body that keeps coming at more than the minimum
// rate is received whole across many windows and sent upstream.
func TestUploadAboveTheMinimumRatePasses(t *testing.T) {
	h, _ := spoolHarness(t, func(c *proxy.Config) {
		c.UploadMinRate, c.UploadRateWindow = 8<<10, 200*time.Millisecond
	})
	up := h.countUpstream()
	body, ctype := pageForm(t, make([]byte, 160<<10), "model", "ink-whisper")
	resp, got := h.do(h.uploadRequest("/cartesia/stt", ctype,
		&paced{r: bytes.NewReader(body), piece: 4 << 10, every: 10 * time.Millisecond},
		int64(len(body))))
	if resp.StatusCode != 200 || up.requests.Load() != 1 {
		t.Errorf("got %d %s; upstream saw %d requests, want 200 and 1", resp.StatusCode, got,
			up.requests.Load())
	}
}

// paced reads at most piece bytes at a time, waiting every between reads: a client
// uploading steadily over a slow link.
type paced struct {
	r     *bytes.Reader
	piece int
	every time.Duration
	began bool
}

func (p *paced) Read(b []byte) (int, error) {
	if p.began {
		time.Sleep(p.every) // the pace of the body itself, not synchronisation
	}
	p.began = true
	return p.r.Read(b[:min(len(b), p.piece)])
}
