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

// start is the client's wall clock at the beginning of every test.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeServer plays POST /api/token: it mints tokens with the configured lifetime, on a
// server clock that is the client's wall clock plus skew, and can be told to fail or to
// hold refreshes until released.
type fakeServer struct {
	clock *FakeClock

	mu    sync.Mutex
	ttl   time.Duration
	skew  time.Duration
	calls map[string]int
	fails []error                  // returned by the next calls, in order
	gates map[string]chan struct{} // a refresh of this grant waits for the gate to close
	ctxs  []context.Context        // the context each refresh ran on
}

func newFakeServer(clock *FakeClock, ttl time.Duration) *fakeServer {
	return &fakeServer{clock: clock, ttl: ttl, calls: map[string]int{},
		gates: map[string]chan struct{}{}}
}

func (s *fakeServer) refresh(ctx context.Context, grant string) (Token, error) {
	s.mu.Lock()
	s.calls[grant]++
	s.ctxs = append(s.ctxs, ctx)
	gate := s.gates[grant]
	s.mu.Unlock()

	if gate != nil {
		<-gate
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fails) > 0 {
		err := s.fails[0]
		s.fails = s.fails[1:]
		return Token{}, err
	}
	now := s.clock.Now().Add(s.skew)
	return Token{Grant: grant, ExpiresIn: s.ttl.Seconds(), ExpiresAt: now.Add(s.ttl).UnixMilli(),
		ServerTime: now.UnixMilli()}, nil
}

func (s *fakeServer) callCount(grant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[grant]
}

func (s *fakeServer) hold(grant string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	s.gates[grant] = gate
	return gate
}

func (s *fakeServer) failNext(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, errs...)
}

func (s *fakeServer) set(ttl, skew time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl, s.skew = ttl, skew
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) count(typ, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Type == typ && (reason == "" || ev.Reason == reason) {
			n++
		}
	}
	return n
}

func (r *recorder) last(typ string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Type == typ {
			return r.events[i], true
		}
	}
	return Event{}, false
}

// fixture is a tracker wired to a fake clock, a fake server and an event recorder.
type fixture struct {
	clock   *FakeClock
	server  *fakeServer
	events  *recorder
	tracker *Tracker
}

func newFixture(t *testing.T, ttl time.Duration, opts Options) *fixture {
	t.Helper()
	f := &fixture{clock: NewFakeClock(start), events: &recorder{}}
	f.server = newFakeServer(f.clock, ttl)
	opts.Clock = f.clock
	opts.Refresh = f.server.refresh
	opts.OnEvent = f.events.add
	f.tracker = New(opts)
	t.Cleanup(f.tracker.Close)
	return f
}

func (f *fixture) ensure(t *testing.T, grant string) State {
	t.Helper()
	st, err := f.tracker.Ensure(context.Background(), grant)
	if err != nil {
		t.Fatalf("Ensure(%q): %v", grant, err)
	}
	return st
}

func TestEnsureRefreshesWhenNoTokenIsKnown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})

		st := f.ensure(t, "tts")

		if got := f.server.callCount("tts"); got != 1 {
			t.Fatalf("refreshes = %d, want 1", got)
		}
		if !st.Valid || st.Remaining != 300*time.Second || st.Refreshes != 1 {
			t.Fatalf("state = %+v, want valid with 300s remaining after 1 refresh", st)
		}
		if n := f.events.count(EventRefresh, ReasonMissing); n != 1 {
			t.Fatalf("refresh events with reason missing = %d, want 1", n)
		}
	})
}

func TestEnsureUsesFreshTokenWithoutRefreshing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		f.ensure(t, "tts")

		f.clock.Advance(269 * time.Second) // 31 s left, margin 30 s
		st := f.ensure(t, "tts")

		if got := f.server.callCount("tts"); got != 1 {
			t.Fatalf("refreshes = %d, want 1", got)
		}
		if st.Remaining != 31*time.Second {
			t.Fatalf("remaining = %v, want 31s", st.Remaining)
		}
	})
}

func TestEnsureRefreshesInsideTheMargin(t *testing.T) {
	cases := []struct {
		elapsed    time.Duration
		refreshes  int
		wantReason string
	}{
		{elapsed: 269 * time.Second, refreshes: 1},
		{elapsed: 270 * time.Second, refreshes: 2, wantReason: ReasonExpiring},
		{elapsed: 299 * time.Second, refreshes: 2, wantReason: ReasonExpiring},
		{elapsed: 301 * time.Second, refreshes: 2, wantReason: ReasonExpiring},
	}
	for _, tc := range cases {
		t.Run(tc.elapsed.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 300*time.Second, Options{NoProactive: true})
				f.ensure(t, "tts")

				f.clock.Advance(tc.elapsed)
				st := f.ensure(t, "tts")

				if got := f.server.callCount("tts"); got != tc.refreshes {
					t.Fatalf("refreshes = %d, want %d", got, tc.refreshes)
				}
				if tc.wantReason != "" && f.events.count(EventRefresh, tc.wantReason) != 1 {
					t.Fatalf("no refresh event with reason %q", tc.wantReason)
				}
				if !st.Valid || st.Remaining <= st.Margin {
					t.Fatalf("Ensure returned %+v, want a token valid beyond the margin", st)
				}
			})
		})
	}
}

func TestDefaultMarginIsAFifthOfTheLifetimeCappedAt30s(t *testing.T) {
	cases := []struct{ lifetime, margin time.Duration }{
		{2 * time.Second, 400 * time.Millisecond},
		{60 * time.Second, 12 * time.Second},
		{150 * time.Second, 30 * time.Second},
		{300 * time.Second, 30 * time.Second},
		{3600 * time.Second, 30 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.lifetime.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, tc.lifetime, Options{})

				st := f.ensure(t, "tts")

				if st.Margin != tc.margin || st.Lifetime != tc.lifetime {
					t.Fatalf("margin, lifetime = %v, %v; want %v, %v",
						st.Margin, st.Lifetime, tc.margin, tc.lifetime)
				}
			})
		})
	}
}

func TestMarginNotShorterThanLifetimeIsReportedNotLooped(t *testing.T) {
	for _, margin := range []time.Duration{60 * time.Second, 61 * time.Second} {
		t.Run(margin.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 60*time.Second, Options{Margin: margin})

				_, err := f.tracker.Ensure(context.Background(), "tts")
				if !errors.Is(err, ErrMarginTooLarge) {
					t.Fatalf("first Ensure error = %v, want ErrMarginTooLarge", err)
				}
				var re *RefreshError
				if !errors.As(err, &re) || re.Code != CodeMarginTooLarge || re.Grant != "tts" {
					t.Fatalf("error = %#v, want a *RefreshError with code %s", err, CodeMarginTooLarge)
				}

				f.clock.Advance(10 * time.Second)
				for range 5 {
					if _, err := f.tracker.Ensure(context.Background(), "tts"); !errors.Is(err,
						ErrMarginTooLarge) {
						t.Fatalf("later Ensure error = %v, want ErrMarginTooLarge", err)
					}
				}
				synctest.Wait()
				if got := f.server.callCount("tts"); got != 1 {
					t.Fatalf("refreshes while the token lives = %d, want 1", got)
				}
				if n := f.events.count(EventRefreshError, ""); n != 1 {
					t.Fatalf("refresherror events = %d, want 1", n)
				}

				f.clock.Advance(51 * time.Second) // past expiry: one more refresh, same report
				_, err = f.tracker.Ensure(context.Background(), "tts")
				if !errors.Is(err, ErrMarginTooLarge) || f.server.callCount("tts") != 2 {
					t.Fatalf("after expiry: err %v, refreshes %d; want the margin error after 2",
						err, f.server.callCount("tts"))
				}
			})
		})
	}
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		gate := f.server.hold("tts")

		const callers = 20
		states := make(chan State, callers)
		for range callers {
			go func() {
				st, err := f.tracker.Ensure(context.Background(), "tts")
				if err != nil {
					t.Errorf("Ensure: %v", err)
				}
				states <- st
			}()
		}
		synctest.Wait()
		if st := f.tracker.State("tts"); !st.Refreshing {
			t.Fatalf("state while waiting = %+v, want Refreshing", st)
		}
		close(gate)

		for range callers {
			if st := <-states; !st.Valid || st.Refreshes != 1 {
				t.Fatalf("caller got %+v, want the one shared token", st)
			}
		}
		if got := f.server.callCount("tts"); got != 1 {
			t.Fatalf("refreshes = %d, want 1", got)
		}
	})
}

func TestCallerCancelDoesNotCancelTheSharedRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		gate := f.server.hold("tts")

		ctx, cancel := context.WithCancel(context.Background())
		impatient := make(chan error, 1)
		go func() {
			_, err := f.tracker.Ensure(ctx, "tts")
			impatient <- err
		}()
		patient := make(chan State, 1)
		go func() {
			st, _ := f.tracker.Ensure(context.Background(), "tts")
			patient <- st
		}()
		synctest.Wait()

		cancel()
		err := <-impatient
		var re *RefreshError
		if !errors.Is(err, context.Canceled) || !errors.As(err, &re) || re.Code != CodeAborted {
			t.Fatalf("cancelled caller got %v, want an aborted error wrapping context.Canceled", err)
		}
		if err := f.server.ctxs[0].Err(); err != nil {
			t.Fatalf("shared refresh context ended with the caller: %v", err)
		}

		close(gate)
		if st := <-patient; !st.Valid {
			t.Fatalf("other caller got %+v, want a valid token", st)
		}
		if got := f.server.callCount("tts"); got != 1 {
			t.Fatalf("refreshes = %d, want 1", got)
		}
	})
}

func TestGrantsRefreshIndependently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		gate := f.server.hold("tts")

		tts := make(chan State, 1)
		go func() {
			st, _ := f.tracker.Ensure(context.Background(), "tts")
			tts <- st
		}()
		synctest.Wait()

		st := f.ensure(t, "stt") // must not wait for the held tts refresh
		if !st.Valid || f.tracker.State("tts").Valid {
			t.Fatalf("stt %+v / tts %+v: want stt valid while tts still refreshes", st,
				f.tracker.State("tts"))
		}

		close(gate)
		if st := <-tts; !st.Valid {
			t.Fatalf("tts state = %+v, want valid", st)
		}
		if f.server.callCount("tts") != 1 || f.server.callCount("stt") != 1 {
			t.Fatalf("calls = %v, want one per grant", f.server.calls)
		}
	})
}

func TestSkewedClientClockKeepsCorrectRemainingTime(t *testing.T) {
	// skew is the server's clock minus the client's: negative means the client is fast.
	for _, skew := range []time.Duration{-10 * time.Minute, -3 * time.Minute, 3 * time.Minute,
		10 * time.Minute, 2 * time.Hour} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 300*time.Second, Options{})
				f.server.set(300*time.Second, skew)

				st := f.ensure(t, "tts")
				if st.ClockOffset != skew {
					t.Fatalf("clock offset = %v, want %v", st.ClockOffset, skew)
				}
				wantServerExp := start.Add(skew + 300*time.Second)
				if !st.ServerExpiresAt.Equal(wantServerExp) {
					t.Fatalf("server expiry = %v, want %v", st.ServerExpiresAt, wantServerExp)
				}

				f.clock.Advance(100 * time.Second)
				st = f.ensure(t, "tts")
				if st.Remaining != 200*time.Second || !st.ExpiresAt.Equal(start.Add(300*time.Second)) {
					t.Fatalf("remaining %v, local expiry %v; want 200s and %v", st.Remaining,
						st.ExpiresAt, start.Add(300*time.Second))
				}
				if got := f.server.callCount("tts"); got != 1 {
					t.Fatalf("refreshes = %d, want 1 (skew must not force refreshes)", got)
				}
			})
		})
	}
}

func TestSleepThatStopsMonotonicClockStillRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		f.ensure(t, "tts")

		f.clock.AdvanceWall(20 * time.Minute) // laptop lid closed: performance.now stood still
		if f.clock.Fired() != 0 {
			t.Fatal("a timer fired although the monotonic clock did not move")
		}
		if st := f.tracker.State("tts"); st.Valid {
			t.Fatalf("state after sleep = %+v, want expired", st)
		}

		st := f.ensure(t, "tts")
		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("refreshes = %d, want 2", got)
		}
		if !st.Valid || f.events.count(EventRefresh, ReasonExpiring) != 1 {
			t.Fatalf("state %+v: want a valid token refreshed for reason expiring", st)
		}
	})
}

func TestWallClockSetBackStillRefreshesWhenDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{NoProactive: true})
		f.ensure(t, "tts")

		f.clock.AdvanceWall(-time.Hour) // the user sets the clock back
		f.clock.AdvanceMono(200 * time.Second)
		if st := f.ensure(t, "tts"); st.Remaining != 100*time.Second {
			t.Fatalf("remaining = %v, want 100s from the monotonic clock", st.Remaining)
		}

		f.clock.AdvanceMono(71 * time.Second) // 29 s left: inside the margin
		f.ensure(t, "tts")
		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("refreshes = %d, want 2", got)
		}
	})
}

func TestProactiveTimerIsRearmedForEveryToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 100*time.Second, Options{}) // margin 20 s
		f.ensure(t, "tts")
		if n := f.clock.Pending(); n != 2 {
			t.Fatalf("armed timers = %d, want 2 (expiring and expired)", n)
		}

		for round := 1; round <= 3; round++ {
			f.ensure(t, "tts") // the grant stays in use, so it is refreshed ahead of time
			f.clock.Advance(79 * time.Second)
			synctest.Wait()
			if got := f.server.callCount("tts"); got != round {
				t.Fatalf("round %d: refreshes before the due time = %d, want %d", round, got, round)
			}

			f.clock.Advance(time.Second)
			synctest.Wait()
			if got := f.server.callCount("tts"); got != round+1 {
				t.Fatalf("round %d: refreshes = %d, want %d", round, got, round+1)
			}
			if n := f.clock.Pending(); n != 2 {
				t.Fatalf("round %d: armed timers = %d, want 2 (old ones cancelled)", round, n)
			}
		}

		if f.clock.Fired() != 3 {
			t.Fatalf("timers fired = %d, want 3 (one per token, none stale)", f.clock.Fired())
		}
		if n := f.events.count(EventRefresh, ReasonProactive); n != 3 {
			t.Fatalf("proactive refresh events = %d, want 3", n)
		}
		if n := f.events.count(EventExpired, ""); n != 0 {
			t.Fatalf("expired events = %d, want 0", n)
		}
	})
}

// TestExpiringEventForEveryToken follows buglog B01: a replacement token with a different
// lifetime must warn again, from its own expiry, and the old token's timers must be gone.
func TestExpiringEventForEveryToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 120*time.Second, Options{NoProactive: true}) // margin 24 s
		f.ensure(t, "tts")

		f.clock.Advance(96 * time.Second)
		synctest.Wait()
		if n := f.events.count(EventExpiring, ""); n != 1 {
			t.Fatalf("expiring events after the first token's due time = %d, want 1", n)
		}

		f.server.set(240*time.Second, 0) // margin 30 s
		if _, err := f.tracker.Refresh(context.Background(), "tts"); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(209 * time.Second)
		synctest.Wait()
		if n := f.events.count(EventExpiring, ""); n != 1 {
			t.Fatalf("expiring events before the second token's due time = %d, want 1", n)
		}
		if n := f.events.count(EventExpired, ""); n != 0 {
			t.Fatalf("expired events = %d, want 0: the first token was replaced", n)
		}

		f.clock.Advance(time.Second)
		synctest.Wait()
		if n := f.events.count(EventExpiring, ""); n != 2 {
			t.Fatalf("expiring events = %d, want 2", n)
		}

		f.clock.Advance(30 * time.Second)
		synctest.Wait()
		ev, ok := f.events.last(EventExpired)
		if !ok || ev.State.Valid || f.events.count(EventExpired, "") != 1 {
			t.Fatalf("expired event = %+v (found %v), want exactly one with an invalid state", ev, ok)
		}
	})
}

func TestInvalidateMakesNextEnsureRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		f.ensure(t, "tts")

		f.tracker.Invalidate("tts")
		if f.tracker.State("tts").Valid {
			t.Fatal("state still valid after Invalidate")
		}
		if n := f.clock.Pending(); n != 0 {
			t.Fatalf("armed timers after Invalidate = %d, want 0", n)
		}
		st := f.ensure(t, "tts")

		if got := f.server.callCount("tts"); got != 2 || st.Refreshes != 2 {
			t.Fatalf("refreshes = %d (state %d), want 2", got, st.Refreshes)
		}
		if n := f.events.count(EventRefresh, ReasonRetry); n != 1 {
			t.Fatalf("refresh events with reason retry = %d, want 1", n)
		}
	})
}

func TestRefreshErrorsAreTyped(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		code      string
		status    int
		temporary bool
	}{
		{"no session", &RefreshError{Code: "no_session", Status: 401}, "no_session", 401, false},
		{"forbidden", &RefreshError{Code: "grant_forbidden", Status: 403}, "grant_forbidden", 403,
			false},
		{"rate limited", &RefreshError{Code: "rate_limited", Status: 429,
			RetryAfter: 5 * time.Second}, "rate_limited", 429, true},
		{"upstream", &RefreshError{Code: "upstream_error", Status: 502}, "upstream_error", 502, true},
		{"network", &RefreshError{Code: CodeNetworkError}, CodeNetworkError, 0, true},
		{"untyped", errors.New("boom"), CodeRefreshFailed, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 300*time.Second, Options{})
				f.server.failNext(tc.err)

				_, err := f.tracker.Ensure(context.Background(), "stt")

				var re *RefreshError
				if !errors.As(err, &re) {
					t.Fatalf("error %v is not a *RefreshError", err)
				}
				if re.Code != tc.code || re.Status != tc.status || re.Grant != "stt" ||
					re.Temporary() != tc.temporary {
					t.Fatalf("error = %+v, want code %s status %d temporary %v for stt", re,
						tc.code, tc.status, tc.temporary)
				}
				ev, ok := f.events.last(EventRefreshError)
				if !ok || ev.Err.Code != tc.code || ev.Reason != ReasonMissing {
					t.Fatalf("refresherror event = %+v, want code %s reason missing", ev, tc.code)
				}
				if st := f.tracker.State("stt"); st.LastError == nil || st.LastError.Code != tc.code {
					t.Fatalf("state.LastError = %v, want code %s", st.LastError, tc.code)
				}
			})
		})
	}
}

func TestBadRefreshAnswerIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 0, Options{}) // expires_in 0 and no usable expires_at

		_, err := f.tracker.Ensure(context.Background(), "tts")

		var re *RefreshError
		if !errors.As(err, &re) || re.Code != CodeBadResponse {
			t.Fatalf("error = %v, want code %s", err, CodeBadResponse)
		}
	})
}

func TestFailedProactiveRefreshBacksOffWithCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 100*time.Second, Options{
			Backoff: Backoff{Initial: 4 * time.Second, Max: 16 * time.Second},
			Jitter:  func() float64 { return 0 }, // waits are exactly half the backoff
		})
		f.ensure(t, "tts")
		upstream := &RefreshError{Code: "upstream_error", Status: 502}
		f.server.failNext(upstream, upstream, upstream, upstream)

		f.clock.Advance(80 * time.Second) // due: proactive refresh fails
		synctest.Wait()
		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("refreshes at the due time = %d, want 2", got)
		}

		// Waits of 2 s, 4 s, 8 s, then capped at 8 s (16 s halved by the jitter).
		for i, wait := range []time.Duration{2, 4, 8, 8} {
			wait *= time.Second
			f.clock.Advance(wait - time.Millisecond)
			synctest.Wait()
			if got := f.server.callCount("tts"); got != 2+i {
				t.Fatalf("retry %d came early: refreshes = %d", i+1, got)
			}
			f.clock.Advance(time.Millisecond)
			synctest.Wait()
			if got := f.server.callCount("tts"); got != 3+i {
				t.Fatalf("retry %d missing after %v: refreshes = %d", i+1, wait, got)
			}
		}

		st := f.tracker.State("tts")
		if st.LastError != nil || st.Refreshes != 2 || !st.Valid {
			t.Fatalf("state after recovery = %+v, want the second token and no error", st)
		}
		if n := f.events.count(EventRefreshError, ReasonProactive); n != 4 {
			t.Fatalf("proactive refresherror events = %d, want 4", n)
		}
	})
}

func TestRetryAfterOverridesShorterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 100*time.Second, Options{Jitter: func() float64 { return 0 }})
		f.ensure(t, "tts")
		f.server.failNext(&RefreshError{Code: "rate_limited", Status: 429,
			RetryAfter: 15 * time.Second})

		f.clock.Advance(80 * time.Second)
		synctest.Wait()
		f.clock.Advance(15*time.Second - time.Millisecond)
		synctest.Wait()
		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("refreshes before retry-after = %d, want 2", got)
		}
		f.clock.Advance(time.Millisecond)
		synctest.Wait()
		if got := f.server.callCount("tts"); got != 3 {
			t.Fatalf("refreshes after retry-after = %d, want 3", got)
		}
	})
}

func TestServerRetryAfterIsCappedAtFiveMinutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 100*time.Second, Options{Jitter: func() float64 { return 0 }})
		f.ensure(t, "tts")
		f.server.failNext(&RefreshError{Code: "rate_limited", Status: 429,
			RetryAfter: 2 * time.Hour})

		f.clock.Advance(80 * time.Second) // due: the proactive refresh is refused
		synctest.Wait()
		if st := f.tracker.State("tts"); st.Backoff != MaxRetryAfter {
			t.Fatalf("backoff after a 2 h Retry-After = %v, want %v", st.Backoff, MaxRetryAfter)
		}
		f.clock.Advance(MaxRetryAfter - time.Millisecond)
		synctest.Wait()
		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("refreshes before the capped wait = %d, want 2", got)
		}
		f.clock.Advance(time.Millisecond)
		synctest.Wait()
		if got := f.server.callCount("tts"); got != 3 {
			t.Fatalf("refreshes after the capped wait = %d, want 3", got)
		}
	})
}

func TestPermanentRefreshErrorStopsProactiveRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 100*time.Second, Options{})
		f.ensure(t, "tts")
		f.server.failNext(&RefreshError{Code: "no_session", Status: 401})

		f.clock.Advance(80 * time.Second)
		synctest.Wait()

		if n := f.clock.Pending(); n != 1 {
			t.Fatalf("armed timers = %d, want only the expired timer", n)
		}
		f.clock.Advance(time.Hour)
		synctest.Wait()
		if got := f.server.callCount("tts"); got != 2 {
			t.Fatalf("refreshes = %d, want 2 (no retry after no_session)", got)
		}
	})
}

func TestTemporaryFailureKeepsUsingAStillValidToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{NoProactive: true})
		f.ensure(t, "tts")
		f.clock.Advance(280 * time.Second) // 20 s left, inside the margin
		f.server.failNext(&RefreshError{Code: "upstream_error", Status: 502})

		st, err := f.tracker.Ensure(context.Background(), "tts")

		if err != nil || !st.Valid || st.Remaining != 20*time.Second {
			t.Fatalf("Ensure = %+v, %v; want the old token with 20s left", st, err)
		}
		if n := f.events.count(EventRefreshError, ReasonExpiring); n != 1 {
			t.Fatalf("refresherror events = %d, want 1", n)
		}
	})
}

func TestResetForgetsEveryGrantAndCloseRefusesCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		f.ensure(t, "tts")
		f.ensure(t, "stt")

		f.tracker.Reset()
		for _, st := range f.tracker.States() {
			if st.Valid || st.Refreshes != 0 {
				t.Fatalf("state after Reset = %+v, want empty", st)
			}
		}
		if n := f.clock.Pending(); n != 0 {
			t.Fatalf("armed timers after Reset = %d, want 0", n)
		}

		f.tracker.Close()
		if _, err := f.tracker.Ensure(context.Background(), "tts"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Ensure after Close = %v, want ErrClosed", err)
		}
	})
}

func TestStatesListsConfiguredGrantsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 300*time.Second, Options{})
		f.ensure(t, "zeta")

		var names []string
		for _, st := range f.tracker.States() {
			names = append(names, st.Grant)
		}

		if fmt.Sprint(names) != "[tts stt agent zeta]" {
			t.Fatalf("grants = %v, want [tts stt agent zeta]", names)
		}
	})
}
