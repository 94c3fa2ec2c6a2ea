//go:build !js

package e2e

import (
	"fmt"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
)

// TestB07B14B16SleepRefreshesOnlyTheGrantInUse moves the page's clocks forward by 52 s,
// into the last part of a 60 s token's lifetime (its margin is 12 s), as a laptop lid
// closed for a while does (B07: a token fetched before the tab sat unused; B14: sleep).
// Two sleeps follow each other on one page: first the monotonic clock moves with the wall
// clock, then only the wall clock moves (performance.now does not tick during system sleep
// on several systems, so only the wall clock says that time passed). In neither case does
// the browser run a late timer: the client must notice on its own (its wake detector) and
// refresh the grant it used within the lifetime, without any call; the grants nobody used
// are left alone; the next call goes out with a fresh token and is never rejected. (A
// sleep longer than a lifetime makes the grant idle: it is then refreshed at its next use,
// which the other tests cover.)
func TestB07B14B16SleepRefreshesOnlyTheGrantInUse(t *testing.T) {
	t.Parallel()
	s := startServer(t, "TOKEN_TTL=60")
	p := openSeamedPage(t, s, "/", clockStart{})
	p.quickSignIn()
	p.sayOK("Before the lid closes.")

	sleeps := []struct {
		name string
		mono time.Duration
	}{
		{"wall and monotonic clocks jump", 52 * time.Second},
		{"only the wall clock jumps", 0},
	}
	for _, sleep := range sleeps {
		mark := s.Mark()
		p.shiftClock(52*time.Second, sleep.mono)

		// The tts grant was in use: it is refreshed without waiting for a call.
		s.waitCount(t, mark, 1, 5*time.Second, isMint("tts"))
		p.b.waitFor("the page sees a live tts token", `(() => {
			const s = voxgateDemo.client.tokens.state("tts");
			return s.valid && !s.refreshing && s.remainingMs > 50000;
		})()`, stepTimeout)

		call := s.Mark()
		p.sayOK("After the lid opens.")
		lines := s.waitCount(t, call, 1, stepTimeout, isProxied("tts"))
		if n := countLines(lines, isRejected("tts")); n != 0 {
			t.Errorf("%s: %d tts calls were rejected after the wake; want none", sleep.name, n)
		}
		if n := mints(s, mark, "tts"); n != 1 {
			t.Errorf("%s: %d tts mints after the wake, want exactly 1", sleep.name, n)
		}
	}

	// stt and agent were never used: nothing re-mints them.
	if n := mints(s, 0, "stt") + mints(s, 0, "agent"); n != 0 {
		t.Errorf("%d stt/agent mints for grants nobody used", n)
	}
	p.finish(s, "sleep")
}

// TestB18B19SkewedClientClockNeitherLoopsNorServesExpiredTokens runs the page with its clock
// five minutes fast (B19: with a fast clock every fresh token looked expired, and the
// client refreshed forever) and five minutes slow (B18: with a slow clock an expired token
// looked fresh and was served). Tokens live 3 s and proactive refresh is on, so the test
// spans several lifetimes: every call succeeds at the first attempt, the number of mints
// stays near elapsed time over the usable lifetime, and the remaining lifetime the client
// shows is never beyond the real one.
func TestB18B19SkewedClientClockNeitherLoopsNorServesExpiredTokens(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		skew time.Duration
	}{
		{"client clock five minutes fast", 5 * time.Minute},
		{"client clock five minutes slow", -5 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, fmt.Sprintf("TOKEN_TTL=%d", int(tokenTTL.Seconds())))
			p := openSeamedPage(t, s, "/", clockStart{WallOffsetMs: c.skew.Milliseconds()})
			p.quickSignIn()

			start := time.Now()
			mark := s.Mark()
			for i := range 3 {
				p.sayOK(fmt.Sprintf("Skewed call number %d.", i+1))
				state := eval[struct {
					Remaining  int  `json:"remainingMs"`
					Refreshing bool `json:"refreshing"`
				}](p.b, "read the tts state", `voxgateDemo.client.tokens.state("tts")`)
				if state.Remaining > int(tokenTTL.Milliseconds()) ||
					(state.Remaining <= 0 && !state.Refreshing) {
					t.Errorf("call %d: remaining %d ms (refreshing %v), want within (0, %d] or "+
						"a refresh under way", i+1, state.Remaining, state.Refreshing,
						tokenTTL.Milliseconds())
				}
				time.Sleep(1500 * time.Millisecond)
			}
			elapsed := time.Since(start)

			lines := s.Since(mark)
			if n := countLines(lines, isRejected("tts")); n != 0 {
				t.Errorf("%d tts calls were rejected; a skewed clock made the client send an "+
					"expired token", n)
			}
			// Usable lifetime: 3 s minus a margin of 0.6 s. One mint per usable lifetime,
			// plus the first, plus one for timing jitter; a loop would mint hundreds.
			usable := tokenTTL - tokenTTL/5
			limit := int(elapsed/usable) + 2
			if n := countLines(lines, isMint("tts")); n < 2 || n > limit {
				t.Errorf("%d tts mints in %s, want between 2 and %d", n, elapsed.Round(time.Millisecond), limit)
			}
			if errs := p.events("refresherror"); len(errs) != 0 {
				t.Errorf("refresh errors with a skewed clock: %s", eventTypes(errs))
			}
			p.finish(s, "skew")
		})
	}
}

// TestB19MarginLongerThanTheLifetimeIsReportedNotLooped gives a client a 5 s margin for
// 2 s tokens (the server's shortest): the first mint reveals the lifetime, the call fails
// with margin_too_large and a refresherror says so, and no token request follows but the one
// a second call may make. The page's own client, with the default margin (a fifth of the
// lifetime), works with the same 2 s tokens.
func TestB19MarginLongerThanTheLifetimeIsReportedNotLooped(t *testing.T) {
	t.Parallel()
	s := startServer(t, "TOKEN_TTL=2")
	// On demand, so that the page's own client sends no token request of its own while the
	// second client is being counted (both share the page's fetch).
	p := openSeamedPage(t, s, onDemand, clockStart{})
	p.quickSignIn()

	// The default margin (a fifth of the lifetime) suits 2 s tokens.
	p.sayOK("Two second tokens work.")

	got := eval[struct {
		Call     speech        `json:"call"`
		Requests int           `json:"requests"`
		Events   []clientEvent `json:"events"`
	}](p.b, "a client with a 5 s margin", `(async () => {
		const { load } = await import("/voxgate.js");
		const client = await load({ marginMs: 5000 });
		const events = [];
		client.addEventListener("refresherror", (e) => events.push({ type: "refresherror",
			grant: e.detail.grant || "", reason: String(e.detail.reason || ""),
			code: e.detail.error ? String(e.detail.error.code) : "", kind: "" }));
		const before = __net.tokens.tts || 0;
		const call = await __speak("Never spoken.", client);
		await new Promise((resolve) => setTimeout(resolve, 2000));
		await __speak("Never spoken either.", client);
		await new Promise((resolve) => setTimeout(resolve, 500));
		const requests = (__net.tokens.tts || 0) - before;
		client.close();
		return { call, requests, events };
	})()`)
	if got.Call.OK || got.Call.Code != "margin_too_large" {
		t.Errorf("call with a 5 s margin on 2 s tokens: %+v, want code margin_too_large", got.Call)
	}
	// One mint to learn the lifetime, and at most one more for the second call: no loop.
	if got.Requests < 1 || got.Requests > 2 {
		t.Errorf("%d token requests in 2.5 s with an oversized margin, want 1 or 2", got.Requests)
	}
	if len(got.Events) == 0 || got.Events[0].Code != "margin_too_large" {
		t.Errorf("refresherror events %+v, want code margin_too_large", got.Events)
	}
	p.finish(s, "margin")
}

// TestB14B16FrozenTabNeverCallsWithAnExpiredToken freezes the tab for longer than the
// token lives (Page.setWebLifecycleState "frozen": no JavaScript, no timers, which is what
// browsers do to background tabs, only stricter than Chrome's one-wake-a-minute throttle)
// while real time passes, so the token really expires on the server. After the tab resumes,
// a call made at once is not rejected: the token is checked and refreshed first (B16:
// timers alone cannot be trusted; B14: the call right after waking).
func TestB14B16FrozenTabNeverCallsWithAnExpiredToken(t *testing.T) {
	t.Parallel()
	s := startServer(t, fmt.Sprintf("TOKEN_TTL=%d", int(tokenTTL.Seconds())))
	p := openSeamedPage(t, s, "/", clockStart{})
	p.quickSignIn()
	p.sayOK("Before the tab is frozen.")

	p.setLifecycle(cdppage.SetWebLifecycleStateStateFrozen)
	time.Sleep(tokenTTL + 1500*time.Millisecond)
	mark := s.Mark()
	p.setLifecycle(cdppage.SetWebLifecycleStateStateActive)

	p.sayOK("Right after the tab resumed.")
	lines := s.waitCount(t, mark, 1, stepTimeout, isProxied("tts"))
	if n := countLines(lines, isRejected("tts")); n != 0 {
		t.Errorf("%d tts calls were rejected after the tab resumed; want none", n)
	}
	mint, call := -1, -1
	for i, l := range lines {
		if mint < 0 && isMint("tts")(l) {
			mint = i
		}
		if call < 0 && isProxied("tts")(l) {
			call = i
		}
	}
	if mint < 0 || mint > call {
		t.Errorf("after the freeze: mint at line %d, call at line %d; want a mint first", mint, call)
	}
	p.finish(s, "frozen")
}
