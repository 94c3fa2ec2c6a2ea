package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/token"
)

// longToken is shaped like a real access token: about 290 bytes, far more than the 123 a
// close reason holds, so that upstream can quote only part of it in one reason.
var longToken = sectest.TokenPrefix + strings.Repeat("Ab3-xY9_qR7.zK2wM5n", 15)

// TestCloseReasonSharingPartOfTheTokenIsWithheld: two sockets could each leak a part of
// the token (its first and its last 120 characters) through upstream close reasons. A
// reason that shares 16 or more bytes with the token is replaced by a fixed one; the
// code still passes, and the block is one token_echo_blocked event.
func TestCloseReasonSharingPartOfTheTokenIsWithheld(t *testing.T) {
	const withheld = "upstream close reason withheld"
	tests := []struct {
		name, reason, want string
	}{
		{"the first 120 characters", longToken[:120], withheld},
		{"the last 120 characters", longToken[len(longToken)-120:], withheld},
		{"16 characters inside other text", "bad token " + longToken[100:116] + " here",
			withheld},
		{"15 characters pass", "bad token " + longToken[100:115] + " here",
			"bad token " + longToken[100:115] + " here"},
		{"an unrelated reason passes", "call ended by agent", "call ended by agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
				if _, _, err := c.Read(ctx); err != nil {
					return err
				}
				return c.Close(4001, tt.reason)
			})
			v, err := h.sealer.Seal(h.sess.ID, token.Token{Value: token.NewValue(longToken),
				Grant: token.TTS, ExpiresAt: h.clk.Now().Add(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
				&http.Cookie{Name: seal.CookieName(token.TTS), Value: v})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			writeWithin(t, c, websocket.MessageText, []byte("{}"))

			if got := expectClose(t, c); got.code != 4001 || got.reason != tt.want {
				t.Errorf("client saw %d %q, want 4001 %q", got.code, got.reason, tt.want)
			}
			blocked := tt.want == withheld
			waitFor(t, "the proxy event", func() bool {
				return len(h.logs.Events(t, "proxy")) == 1
			})
			events := h.logs.Matching(t, "token_echo_blocked",
				map[string]string{"where": "close_reason", "route": "/cartesia/tts/websocket"})
			if (len(events) == 1) != blocked {
				t.Errorf("%d token_echo_blocked close_reason events, want blocked %v",
					len(events), blocked)
			}
		})
	}
}
