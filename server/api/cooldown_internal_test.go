package api

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// TestAccountWideNeedsThreeUsersWithinTheWindow plays sequences of upstream 429s (user,
// seconds since the previous one) and checks which ones count as account-wide: one
// user's burst never does, nor does it with one bystander, however often; three
// different users within accountWideWindow do.
func TestAccountWideNeedsThreeUsersWithinTheWindow(t *testing.T) {
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
		{"a burst and one bystander, again and again", []hit{{"a", 0, false},
			{"v", 0, false}, {"a", 0, false}, {"v", 1, false}, {"a", 5, false},
			{"v", 0, false}, {"v", 5, false}, {"a", 0, false}}},
		{"three users within the window", []hit{{"a", 0, false}, {"b", 4, false},
			{"c", 5, true}}},
		{"the third user after the window", []hit{{"a", 0, false}, {"b", 5, false},
			{"c", 5, false}}},
		{"a user again does not count twice", []hit{{"a", 0, false}, {"b", 1, false},
			{"b", 1, false}, {"a", 1, false}, {"c", 1, true}}},
		{"the oldest user drops out", []hit{{"a", 0, false}, {"b", 5, false},
			{"c", 5, false}, {"d", 1, true}}},
		{"a burst after the window forgets the others", []hit{{"a", 0, false},
			{"b", 1, false}, {"a", 10, false}, {"a", 0, false}, {"c", 1, false}}},
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

// TestUserCoolDownWithoutRetryAfter: a 429 without Retry-After cools its user down for
// DefaultUserCoolDown, shorter than the breaker's DefaultQuotaCoolDown.
func TestUserCoolDownWithoutRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	c := newCoolDowns(func() time.Time { return now }, slog.New(slog.DiscardHandler))
	if c.accountWide("a", token.TTS, &token.UpstreamError{Status: 429}) {
		t.Fatal("one user's 429 was account-wide")
	}
	if wait, ok := c.waiting("a"); !ok || wait != 5*time.Second {
		t.Errorf("cooling %v for %v, want 5 s", ok, wait)
	}
	if DefaultQuotaCoolDown != 10*time.Second {
		t.Errorf("DefaultQuotaCoolDown %v, want 10 s", DefaultQuotaCoolDown)
	}
}

// TestMintsInFlightCapPerUser: each user has maxMintsInFlight places; a released place
// can be taken again, and other users are not affected.
func TestMintsInFlightCapPerUser(t *testing.T) {
	m := newMintsInFlight()
	for i := range maxMintsInFlight {
		if !m.acquire("a") {
			t.Fatalf("place %d refused", i+1)
		}
	}
	if m.acquire("a") {
		t.Fatal("a third mint in flight was let through")
	}
	if !m.acquire("b") {
		t.Fatal("another user was refused")
	}
	m.release("a")
	if !m.acquire("a") {
		t.Fatal("a released place could not be taken again")
	}
	m.release("a")
	m.release("a")
	m.release("b")
	if len(m.count) != 0 {
		t.Errorf("the table keeps %d users with nothing in flight", len(m.count))
	}
}
