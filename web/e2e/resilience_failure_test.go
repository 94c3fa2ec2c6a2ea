//go:build !js

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// callBurst makes n concurrent tts calls in the page and returns their error codes ("" for
// a success).
func (p *page) callBurst(n int) []string {
	p.t.Helper()
	return eval[[]string](p.b, "concurrent calls", fmt.Sprintf(`Promise.all(
		Array.from({length: %d}, (_, i) => __speak("Burst call " + i))).then(
		(all) => all.map((r) => r.ok ? "" : r.code))`, n))
}

// TestRefreshRateLimitedHonoursRetryAfterThenRecovers runs the server with a mint rate of
// twenty a minute (a burst of ten, then one every 3 s). Once the burst is spent, the token
// endpoint answers 429 rate_limited with a Retry-After. While that window is open, bursts
// of calls fail fast with rate_limited and cause no further token requests (a client that
// retried per call would flood the server); a refresherror names the code; after the
// window a call succeeds.
func TestRefreshRateLimitedHonoursRetryAfterThenRecovers(t *testing.T) {
	t.Parallel()
	s := startServer(t, "TOKEN_MINT_RATE=20")
	p := openSeamedPage(t, s, onDemand, clockStart{})
	p.quickSignIn()

	// Spend the burst on the other grants; tts has no token yet.
	eval[bool](p.b, "spend the mint burst", `(async () => {
		for (let i = 0; i < 10; i++) {
			await voxgateDemo.client.tokens.refresh(i % 2 ? "stt" : "agent");
		}
		return true;
	})()`)

	limited := time.Now()
	if r := p.say("Rate limited."); r.OK || r.Code != "rate_limited" {
		t.Fatalf("a call with the mint budget spent: %+v, want code rate_limited", r)
	}

	// While the window is open: bursts of calls, all failing fast, no new token requests.
	for range 3 {
		for i, code := range p.callBurst(5) {
			if code != "rate_limited" {
				t.Errorf("call %d inside the Retry-After window: code %q, want rate_limited", i, code)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := p.tokenRequests("tts"); n != 1 {
		t.Errorf("%d tts token requests for 16 calls inside the Retry-After window, want 1", n)
	}
	errs := p.events("refresherror")
	if len(errs) == 0 || errs[len(errs)-1].Code != "rate_limited" {
		t.Errorf("refresherror events %s, want the last with code rate_limited", eventTypes(errs))
	}

	// After the window (at most 3 s at this rate, rounded up to whole seconds) a call goes
	// through.
	time.Sleep(time.Until(limited.Add(3 * time.Second)))
	mark := s.Mark()
	p.b.waitFor("the Retry-After window closes", `__speak("Recovered.").then(
		(r) => r.ok || new Promise((resolve) => setTimeout(() => resolve(false), 200)))`,
		stepTimeout)
	if n := mints(s, mark, "tts"); n != 1 {
		t.Errorf("%d tts mints after the window, want 1", n)
	}
	p.finish(s, "rate-limited")
}

// TestRefreshFailingThenRecoveringBacksOff makes the token endpoint fail for 3 s, as an
// unreachable upstream (502 upstream_unavailable from the server) and as a dead network
// (fetch rejects, network_error), while the page calls ten times a second. The client
// backs off: the token requests it sends are few (a handful, not one per call), the calls
// fail with the code that says what failed, and once the endpoint recovers a call succeeds
// within the backoff cap.
func TestRefreshFailingThenRecoveringBacksOff(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		rule netRule
		code string
	}{
		{"upstream unavailable", netRule{Path: "/api/token", Status: 502,
			Code: "upstream_unavailable"}, "upstream_unavailable"},
		{"network down", netRule{Path: "/api/token", Network: true}, "network_error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, "TOKEN_TTL=2")
			p := openSeamedPage(t, s, onDemand, clockStart{})
			p.quickSignIn()
			p.sayOK("Before the outage.")
			p.waitExpired("tts")

			p.setRules(c.rule)
			before := p.tokenRequests("tts")
			codes := eval[[]string](p.b, "call ten times a second for 3 s", `(async () => {
				const codes = [];
				const end = performance.now() + 3000;
				while (performance.now() < end) {
					const r = await Promise.race([__speak("During the outage."),
						new Promise((resolve) => setTimeout(() => resolve({code: "slow"}), 100))]);
					codes.push(r.ok ? "" : r.code);
					await new Promise((resolve) => setTimeout(resolve, 100));
				}
				return codes;
			})()`)
			attempts := p.tokenRequests("tts") - before

			wrong, fast := 0, 0
			for _, code := range codes {
				switch code {
				case c.code:
					fast++
				case "slow":
				default:
					wrong++
				}
			}
			if wrong > 0 {
				t.Errorf("calls during the outage ended with %q; want %s (or still waiting)",
					codes, c.code)
			}
			// While a backoff window is open, calls fail at once with the last error.
			if fast < len(codes)/2 {
				t.Errorf("only %d of %d calls during the outage failed within 100 ms: %q",
					fast, len(codes), codes)
			}
			// 3 s of failures: with backoff from a few hundred ms and doubling that is about
			// four attempts; one per call would be about fifteen.
			if attempts < 1 || attempts > 6 {
				t.Errorf("%d token requests during a 3 s outage with %d calls, want 1 to 6",
					attempts, len(codes))
			}
			errs := p.events("refresherror")
			if len(errs) == 0 || errs[len(errs)-1].Code != c.code {
				t.Errorf("refresherror events %s, want the last with code %s", eventTypes(errs), c.code)
			}

			// Recovery: calls succeed again within the backoff cap (plus slack).
			p.setRules()
			mark := s.Mark()
			recovered := time.Now()
			p.b.waitFor("a call succeeds after the outage", `__speak("After the outage.").then(
				(r) => r.ok || new Promise((resolve) => setTimeout(() => resolve(false), 200)))`,
				40*time.Second)
			t.Logf("first success %s after the endpoint recovered",
				time.Since(recovered).Round(100*time.Millisecond))
			if n := mints(s, mark, "tts"); n < 1 || n > 2 {
				t.Errorf("%d tts mints after the recovery, want 1 (2 if a proactive refresh "+
					"ran as well)", n)
			}
			p.finish(s, "outage")
		})
	}
}

// TestB18RevokedTokenUnderAnOpenPageIsReplacedOnce takes the tts token away from a page
// whose client still believes it fresh (its clock is even 5 minutes slow, B18), in two
// ways one after the other: the cookie is replaced with a sealed cookie of another grant
// (the server cannot open it, as after a key rotation), then deleted. Each time the next
// call is answered 401 no_token; the client forgets its cached expiry, refreshes once and
// retries once: the call succeeds with exactly one rejection and one mint.
func TestB18RevokedTokenUnderAnOpenPageIsReplacedOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openSeamedPage(t, s, "/", clockStart{WallOffsetMs: (-5 * time.Minute).Milliseconds()})
	p.quickSignIn()
	p.sayOK("Before the token is revoked.")
	eval[bool](p.b, "refresh stt", `voxgateDemo.client.tokens.refresh("stt").then(() => true)`)
	if p.cookie("__Host-Http-vg_stt") == "" {
		t.Fatal("no stt cookie after an stt refresh")
	}
	cookies := p.b.cookieValues(s.URL)

	revocations := []struct {
		name   string
		revoke func()
	}{
		{"cookie no longer opens", func() {
			p.replaceCookie("__Host-Http-vg_tts", p.cookie("__Host-Http-vg_stt"))
		}},
		{"cookie gone", func() { p.deleteCookie("__Host-Http-vg_tts") }},
	}
	for _, r := range revocations {
		r.revoke()
		mark := s.Mark()
		p.sayOK("After the token was revoked.")
		cookies = append(cookies, p.b.cookieValues(s.URL)...)

		lines := s.waitCount(t, mark, 1, stepTimeout, isProxied("tts"))
		if n := countLines(lines, isRejected("tts")); n != 1 {
			t.Errorf("%s: %d rejected tts calls, want exactly 1 (the revoked token)", r.name, n)
		}
		if n := countLines(lines, isMint("tts")); n != 1 {
			t.Errorf("%s: %d tts mints, want exactly 1 (the retry's)", r.name, n)
		}
		refreshes := p.events("refresh")
		if last := refreshes[len(refreshes)-1]; last.Grant != "tts" || last.Reason != "retry" {
			t.Errorf("%s: the last refresh was %+v, want tts with reason retry", r.name, last)
		}
	}
	p.finish(s, "revoked")
	assertNoSecrets(t, s, cookies)
}

// TestB27B28NoRefreshLoopOn401 makes every tts call answer a 401 or 403 (injected in the
// page's fetch, so the server never sees those calls) and checks that each call does at
// most one refresh and one retry (B27: a 401 that is not about the token must not loop),
// that only token_expired and no_token cause that retry, and that nothing else follows.
func TestB27B28NoRefreshLoopOn401(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openSeamedPage(t, s, "/", clockStart{})
	p.quickSignIn()
	p.sayOK("A token first.")

	cases := []struct {
		status   int
		code     string
		calls    int // requests to /cartesia/tts/bytes for one call
		refresh  int // token requests for one call
		surfaced string
	}{
		{401, "token_expired", 2, 1, "token_expired"},
		{401, "no_token", 2, 1, "no_token"},
		{401, "upstream_error", 1, 0, "upstream_error"},
		{403, "grant_forbidden", 1, 0, "grant_forbidden"},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%d %s", c.status, c.code)
		p.setRules(netRule{Path: "/cartesia/tts/bytes", Status: c.status, Code: c.code})
		calls, tokens := p.requests("/cartesia/tts/bytes"), p.tokenRequests("tts")

		r := p.say("Refused.")
		if r.OK || r.Code != c.surfaced || r.Status != c.status {
			t.Errorf("%s: call ended %+v, want code %s status %d", name, r, c.surfaced, c.status)
		}
		p.quietFor(time.Second, 0, name)
		if n := p.requests("/cartesia/tts/bytes") - calls; n != c.calls {
			t.Errorf("%s: %d requests for one call, want %d", name, n, c.calls)
		}
		if n := p.tokenRequests("tts") - tokens; n != c.refresh {
			t.Errorf("%s: %d token requests for one call, want %d", name, n, c.refresh)
		}
	}
	p.setRules()
	p.sayOK("Working again.")
	p.finish(s, "no-401-loop")
}

// TestB28SignedOutSessionEndsWithoutALoop ends the session on the server behind the page's
// back. With proactive refresh on and 3 s tokens, the client's next refresh gets 401
// no_session from the token endpoint: that is "signed out", reported once as sessionend,
// and never retried or refreshed again (B28: the refresh call looping through its own 401
// handling). For more than a lifetime after that the page sends no other token request.
func TestB28SignedOutSessionEndsWithoutALoop(t *testing.T) {
	t.Parallel()
	s := startServer(t, fmt.Sprintf("TOKEN_TTL=%d", int(tokenTTL.Seconds())))
	p := openSeamedPage(t, s, "/", clockStart{})
	p.quickSignIn()
	p.sayOK("Signed in for now.")

	// Sign out elsewhere, let the token lapse, then call: the refresh the call needs is
	// answered 401 no_session, which must end the session at once. (An idle page is not
	// refreshed ahead of time, so a call is what makes it ask.)
	p.signOutElsewhere()
	time.Sleep(tokenTTL + 200*time.Millisecond)
	before := p.tokenRequests("")
	if r := p.say("Anyone there?"); r.OK || r.Code != "no_session" {
		t.Errorf("the call after sign-out: ok=%v code %q, want no_session", r.OK, r.Code)
	}
	p.b.waitFor("the page learns the session ended", `document.body.dataset.app === "signed-out"`,
		stepTimeout)
	if n := p.tokenRequests("") - before; n != 1 {
		t.Errorf("%d token requests for the call after sign-out, want exactly 1", n)
	}
	p.quietFor(tokenTTL+time.Second, 0, "after the session ended")

	ends := p.events("sessionend")
	if len(ends) != 1 || ends[0].Reason != "no_session" {
		t.Errorf("sessionend events %s, want exactly one with reason no_session", eventTypes(ends))
	}
	for _, e := range p.events("refresh") {
		if strings.Contains(e.Reason, "retry") {
			t.Errorf("a refresh with reason %q after the session ended", e.Reason)
		}
	}
	p.finish(s, "signed-out")
}
