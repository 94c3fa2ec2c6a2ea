package tracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestIdleGrantIsNotRefreshedAheadOfTime: a grant nobody used during the last token
// lifetime is left to expire and refreshed on demand, so an idle tab stops minting.
func TestIdleGrantIsNotRefreshedAheadOfTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 100*time.Second, Options{}) // margin 20 s
		f.ensure(t, "tts")

		f.clock.Advance(80 * time.Second) // used 80 s ago, within the lifetime: refreshed
		synctest.Wait()
		f.clock.Advance(80 * time.Second) // used 160 s ago: left alone
		synctest.Wait()
		f.clock.Advance(time.Hour)
		synctest.Wait()

		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("requests = %d, want 2 (one proactive refresh after the last use)", got)
		}
		if n := f.events.count(EventExpiring, ""); n != 2 {
			t.Fatalf("expiring events = %d, want 2: idle tokens still warn", n)
		}
		if n := f.events.count(EventExpired, ""); n != 1 {
			t.Fatalf("expired events = %d, want 1", n)
		}

		st := f.ensure(t, "tts")
		if !st.Valid || f.events.count(EventRefresh, ReasonExpiring) != 1 {
			t.Fatalf("state %+v: want a call to refresh on demand", st)
		}
	})
}

// TestCheckRefreshesAfterSleepInBothClockDirections follows buglog B14 and B16: the
// monotonic clock stood still (sleep) or the wall clock was set back while time passed;
// timers did not fire, and a page event (visibility, focus, online, pageshow) runs Check.
// The grant was last used 100 s after the token was minted.
func TestCheckRefreshesAfterSleepInBothClockDirections(t *testing.T) {
	cases := []struct {
		name        string
		wall, mono  time.Duration
		wantRefresh bool // used within the last lifetime
		expired     bool
	}{
		{"short sleep into the margin", 180 * time.Second, 0, true, false},
		{"sleep past expiry", 250 * time.Second, 0, true, true},
		{"wall set back, monotonic ran into the margin", -time.Hour, 175 * time.Second, true,
			false},
		{"long sleep: the grant is idle now", 2 * time.Hour, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 300*time.Second, Options{})
				f.ensure(t, "tts")
				f.clock.Advance(100 * time.Second)
				f.ensure(t, "tts")

				f.clock.AdvanceWall(tc.wall)
				if tc.mono > 0 {
					// Timers follow the monotonic clock; hold them back to model throttling.
					f.clock.mu.Lock()
					f.clock.mono += tc.mono
					f.clock.mu.Unlock()
				}
				if got := f.server.callCount("tts"); got != 1 {
					t.Fatalf("requests before the check = %d, want 1", got)
				}

				f.tracker.Check()
				synctest.Wait()

				want := 1
				if tc.wantRefresh {
					want = 2
				}
				if got := f.server.callCount("tts"); got != want {
					t.Fatalf("requests after the check = %d, want %d", got, want)
				}
				if n := f.events.count(EventExpiring, ""); n != 1 {
					t.Fatalf("expiring events = %d, want 1", n)
				}
				wantExpired := 0
				if tc.expired {
					wantExpired = 1
				}
				if n := f.events.count(EventExpired, ""); n != wantExpired {
					t.Fatalf("expired events = %d, want %d", n, wantExpired)
				}

				f.tracker.Check() // a second check: nothing new to do or report
				synctest.Wait()
				if got := f.server.callCount("tts"); got != want {
					t.Fatalf("requests after a second check = %d, want %d", got, want)
				}
				if n := f.events.count(EventExpired, ""); n != wantExpired {
					t.Fatalf("expired events after a second check = %d, want %d", n, wantExpired)
				}
			})
		})
	}
}

func TestCheckLeavesFreshAndIdleTokensAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{NoProactive: true})
		f.ensure(t, "tts")
		f.ensure(t, "stt")

		f.tracker.Check() // both fresh
		f.clock.AdvanceWall(time.Hour)
		f.tracker.Check() // both expired, but proactive refresh is off
		synctest.Wait()

		if a, b := f.server.callCount("tts"), f.server.callCount("stt"); a != 1 || b != 1 {
			t.Fatalf("requests = %d/%d, want 1/1", a, b)
		}
		if n := f.events.count(EventExpired, ""); n != 2 {
			t.Fatalf("expired events = %d, want 2 (one per grant, from the check)", n)
		}
	})
}

// TestWakeDetectorChecksOnlyAfterALateTick drives the ticker of Options.Wake: a tick far
// later than its interval (on either clock) runs Check; ticks on time do not.
func TestWakeDetectorChecksOnlyAfterALateTick(t *testing.T) {
	cases := []struct {
		name      string
		wallJump  time.Duration
		wantCheck bool
	}{
		{"tick on time", 15 * time.Second, false},
		{"computer slept", 30 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// 300 s tokens are due at 270 s; ticks every 10 s count as late after 30 s.
				f := newFixture(t, 300*time.Second, Options{Wake: 10 * time.Second})
				f.ensure(t, "tts")
				for range 25 { // ticks at 10, 20, ... 250 s, all on time
					f.clock.Advance(10 * time.Second)
					synctest.Wait()
				}
				f.clock.Advance(9 * time.Second)
				synctest.Wait()

				f.clock.AdvanceWall(tc.wallJump) // the token is now inside its margin
				f.clock.AdvanceMono(time.Second) // the tick at 260 s
				synctest.Wait()

				want := 1
				if tc.wantCheck {
					want = 2
				}
				if got := f.server.callCount("tts"); got != want {
					t.Fatalf("requests after the tick = %d, want %d", got, want)
				}
			})
		})
	}
}

func TestWakeDetectorRunsAfterSleepAndStopsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{Wake: time.Second})
		f.ensure(t, "tts")
		if n := f.clock.Pending(); n != 3 {
			t.Fatalf("armed timers = %d, want 3 (expiring, expired, wake)", n)
		}

		f.clock.AdvanceWall(285 * time.Second) // asleep: performance.now stood still
		f.clock.AdvanceMono(time.Second)       // the first tick after waking up
		synctest.Wait()
		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("requests after waking = %d, want 2", got)
		}

		f.tracker.Close()
		if n := f.clock.Pending(); n != 0 {
			t.Fatalf("armed timers after Close = %d, want 0", n)
		}
	})
}

// TestBackoffWindowMakesCallsFailFast: after a failure that may heal, every call within
// the window fails at once with the typed error and no request; the window doubles per
// failure, honours Retry-After and closes on success.
func TestBackoffWindowMakesCallsFailFast(t *testing.T) {
	cases := []struct {
		err    *RefreshError
		window time.Duration // with Initial 4 s and no jitter, the first window is 2 s
	}{
		{&RefreshError{Code: "upstream_error", Status: 502}, 2 * time.Second},
		{&RefreshError{Code: "upstream_unavailable", Status: 502}, 2 * time.Second},
		{&RefreshError{Code: "upstream_timeout", Status: 504}, 2 * time.Second},
		{&RefreshError{Code: CodeNetworkError}, 2 * time.Second},
		{&RefreshError{Code: "rate_limited", Status: 429, RetryAfter: 15 * time.Second},
			15 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.err.Code, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 300*time.Second, Options{
					Backoff: Backoff{Initial: 4 * time.Second, Max: time.Minute},
					Jitter:  func() float64 { return 0 },
				})
				f.server.failNext(tc.err, tc.err)

				for i := range 10 {
					_, err := f.tracker.Ensure(context.Background(), "tts")
					var re *RefreshError
					if !errors.As(err, &re) || re.Code != tc.err.Code {
						t.Fatalf("call %d: error %v, want code %s", i, err, tc.err.Code)
					}
					if i > 0 && re.RetryAfter != tc.window {
						t.Fatalf("call %d: retry after %v, want %v", i, re.RetryAfter, tc.window)
					}
				}
				if got := f.server.callCount("tts"); got != 1 {
					t.Fatalf("requests for 10 calls = %d, want 1", got)
				}
				if st := f.tracker.State("tts"); st.Backoff != tc.window {
					t.Fatalf("state backoff = %v, want %v", st.Backoff, tc.window)
				}

				f.clock.Advance(tc.window)
				_, err := f.tracker.Ensure(context.Background(), "tts") // fails again
				if err == nil || f.server.callCount("tts") != 2 {
					t.Fatalf("after the window: %v, requests %d; want a second failing request",
						err, f.server.callCount("tts"))
				}
				next := max(4*time.Second, tc.err.RetryAfter) // the doubled window, or Retry-After
				if st := f.tracker.State("tts"); st.Backoff != next {
					t.Fatalf("second window = %v, want %v", st.Backoff, next)
				}

				f.clock.Advance(next)
				st := f.ensure(t, "tts")
				if st.Backoff != 0 || st.LastError != nil || f.server.callCount("tts") != 3 {
					t.Fatalf("after recovery: %+v, requests %d; want a token and no window", st,
						f.server.callCount("tts"))
				}
			})
		})
	}
}

func TestBackoffWindowFollowsBothClocks(t *testing.T) {
	cases := []struct {
		name       string
		wall, mono time.Duration
	}{
		{"wall set back, monotonic ran", -time.Hour, 2 * time.Second},
		{"asleep, only the wall ran", 2 * time.Second, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 300*time.Second, Options{
					Backoff: Backoff{Initial: 4 * time.Second},
					Jitter:  func() float64 { return 0 },
				})
				f.server.failNext(&RefreshError{Code: "upstream_error", Status: 502})
				if _, err := f.tracker.Ensure(context.Background(), "tts"); err == nil {
					t.Fatal("first Ensure succeeded, want the upstream error")
				}

				f.clock.AdvanceWall(tc.wall)
				f.clock.AdvanceMono(tc.mono)
				st := f.ensure(t, "tts")

				if !st.Valid || f.server.callCount("tts") != 2 {
					t.Fatalf("state %+v after %d requests: want the window closed", st,
						f.server.callCount("tts"))
				}
			})
		})
	}
}

func TestPermanentRefreshErrorsOpenNoWindow(t *testing.T) {
	for _, err := range []*RefreshError{{Code: "no_session", Status: 401},
		{Code: "grant_forbidden", Status: 403}} {
		t.Run(err.Code, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 300*time.Second, Options{})
				f.server.failNext(err, err)

				for range 2 {
					if _, got := f.tracker.Ensure(context.Background(), "tts"); got == nil {
						t.Fatal("Ensure succeeded, want the error")
					}
				}

				// Each call asks (a sign-in in another tab may have fixed it); none waits.
				if n := f.server.callCount("tts"); n != 2 {
					t.Fatalf("requests = %d, want 2", n)
				}
				if st := f.tracker.State("tts"); st.Backoff != 0 {
					t.Fatalf("backoff = %v, want none", st.Backoff)
				}
			})
		})
	}
}

func TestManyCallersDuringAFailingRefreshMakeOneRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		gate := f.server.hold("tts")
		f.server.failNext(&RefreshError{Code: "upstream_unavailable", Status: 502})

		var wg sync.WaitGroup
		errs := make(chan error, 40)
		call := func() {
			defer wg.Done()
			_, err := f.tracker.Ensure(context.Background(), "tts")
			errs <- err
		}
		for range 20 {
			wg.Add(1)
			go call()
		}
		synctest.Wait()
		close(gate)
		wg.Wait()
		for range 20 {
			wg.Add(1)
			go call()
		}
		wg.Wait()
		close(errs)

		for err := range errs {
			var re *RefreshError
			if !errors.As(err, &re) || re.Code != "upstream_unavailable" {
				t.Fatalf("error %v, want upstream_unavailable", err)
			}
		}
		if got := f.server.callCount("tts"); got != 1 {
			t.Fatalf("requests for 40 calls = %d, want 1", got)
		}
	})
}

// TestRefreshCountIsIdealUnderSkew follows buglog B18 and B19: short tokens (60 s, margin
// 12 s) and a client clock minutes or most of a lifetime off in either direction. Calls
// every 7 s for 10 minutes: every call finds a valid token, and tokens are minted once per
// usable lifetime, never in a loop.
func TestRefreshCountIsIdealUnderSkew(t *testing.T) {
	for _, skew := range []time.Duration{-10 * time.Minute, -50 * time.Second, 0,
		50 * time.Second, 10 * time.Minute} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 60*time.Second, Options{})
				f.server.set(60*time.Second, skew)

				for elapsed := time.Duration(0); elapsed < 10*time.Minute; elapsed += 7 * time.Second {
					st := f.ensure(t, "tts")
					if st.Remaining <= st.Margin {
						t.Fatalf("at %v a call got %+v", elapsed, st)
					}
					f.clock.Advance(7 * time.Second)
					synctest.Wait()
				}

				// Usable lifetime 48 s: 600 s / 48 s = 12.5, plus the first token.
				if got := f.server.callCount("tts"); got != 13 {
					t.Fatalf("requests = %d, want 13", got)
				}
				if n := f.events.count(EventExpired, ""); n != 0 {
					t.Fatalf("expired events = %d, want 0", n)
				}
			})
		})
	}
}
