package api

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// TestAccountWideNeedsTwoUsersWithinTheWindow plays sequences of upstream 429s (user,
// seconds since the previous one) and checks which ones count as account-wide.
func TestAccountWideNeedsTwoUsersWithinTheWindow(t *testing.T) {
	type hit struct {
		user string
		gap  int // seconds after the previous 429
		wide bool
	}
	for _, tt := range []struct {
		name string
		hits []hit
	}{
		{"one user's burst", []hit{{"a", 0, false}, {"a", 0, false}, {"a", 1, false},
			{"a", 30, false}}},
		{"a second user within the window", []hit{{"a", 0, false}, {"b", 59, true}}},
		{"a second user after the window", []hit{{"a", 0, false}, {"b", 60, false}}},
		{"the first user again after the second", []hit{{"a", 0, false}, {"b", 61, false},
			{"a", 10, true}}},
		{"an older other user still counts", []hit{{"a", 0, false}, {"b", 61, false},
			{"b", 20, false}, {"b", 20, false}, {"a", 10, true}}},
		{"the other user too old", []hit{{"a", 0, false}, {"b", 61, false},
			{"b", 30, false}, {"b", 30, false}, {"b", 30, false}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
			var log bytes.Buffer
			c := newCoolDowns(func() time.Time { return now },
				slog.New(slog.NewJSONHandler(&log, nil)))
			cooled := 0
			for i, h := range tt.hits {
				now = now.Add(time.Duration(h.gap) * time.Second)
				ue := &token.UpstreamError{Status: 429, RetryAfter: "5"}
				if got := c.accountWide(h.user, token.TTS, ue); got != h.wide {
					t.Fatalf("429 %d (%s): account-wide %v, want %v", i+1, h.user, got, h.wide)
				}
				if !h.wide {
					cooled++
					if wait, ok := c.waiting(h.user); !ok || wait != 5*time.Second {
						t.Errorf("429 %d (%s): cooling %v for %v, want 5 s", i+1, h.user, ok,
							wait)
					}
				}
			}
			if n := strings.Count(log.String(), `"msg":"user_cool_down"`); n != cooled {
				t.Errorf("%d user_cool_down events, want %d", n, cooled)
			}
		})
	}
}
