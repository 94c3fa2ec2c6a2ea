package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// TestRelayedRetryAfterIsCapped: whatever wait upstream names, on an error, a success or
// a refused WebSocket handshake, the browser is told whole seconds, at most 300; a date
// becomes the seconds until it on the proxy's clock.
func TestRelayedRetryAfterIsCapped(t *testing.T) {
	harnessNow := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC) // newHarness's clock
	tests := []struct{ upstream, want string }{
		{"86400", "300"},
		{"301", "300"},
		{"300", "300"},
		{"42", "42"},
		{harnessNow.Add(90 * time.Second).Format(http.TimeFormat), "90"},
		{harnessNow.Add(48 * time.Hour).Format(http.TimeFormat), "300"},
		{harnessNow.Add(-time.Hour).Format(http.TimeFormat), "0"},
	}
	for _, tt := range tests {
		for _, status := range []int{429, 503, 200} {
			t.Run(fmt.Sprintf("%d %s", status, tt.upstream), func(t *testing.T) {
				h := newHarness(t, nil)
				h.answer(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "audio/wav")
					w.Header().Set("Retry-After", tt.upstream)
					w.WriteHeader(status)
				})
				resp, _ := h.do(h.request(`{}`, h.sessionCookie(),
					h.tokenCookie(token.TTS, time.Minute)))
				if got := resp.Header.Get("Retry-After"); resp.StatusCode != status ||
					got != tt.want {
					t.Errorf("%d Retry-After %q, want %d %q", resp.StatusCode, got, status,
						tt.want)
				}
			})
		}
		t.Run("websocket "+tt.upstream, func(t *testing.T) {
			h := newHarness(t, nil)
			h.answerUnread(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", tt.upstream)
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = io.WriteString(w, `{"error_code":"x","title":"Busy","message":"no"}`)
			})
			_, resp, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
				h.tokenCookie(token.TTS, time.Minute))
			if status, _ := refusal(t, resp, err); status != 429 ||
				resp.Header.Get("Retry-After") != tt.want {
				t.Errorf("%d Retry-After %q, want 429 %q", status,
					resp.Header.Get("Retry-After"), tt.want)
			}
		})
	}
}
