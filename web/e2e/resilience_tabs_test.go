//go:build !js

package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestB21B24B25TabsRefreshingAtOnceMintOnce opens two and three tabs of one browser (they
// share the cookie jar, so one tab's refresh serves all), lets the tts token expire and
// then calls in every tab at the same instant. Exactly one token is minted for all of them
// and every call succeeds at the first attempt (B21: parallel refreshes of one session;
// B24: tabs refreshing with the same credential). In the three-tab case the token endpoint
// answers only after 1.5 s, longer than any polling lock would wait (B25): the waiting
// tabs still wait for the refreshing tab and take its result instead of calling with the
// old token or minting their own.
func TestB21B24B25TabsRefreshingAtOnceMintOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		tabs    int
		delayMs int
	}{
		{2, 0},
		{3, 1500},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d tabs", c.tabs), func(t *testing.T) {
			t.Parallel()
			// The token must outlive the delayed refresh, or no tab could share it: the
			// server answers one second less than TOKEN_TTL, and the refresh takes
			// delayMs.
			ttl := tokenTTL + time.Duration(c.delayMs)*time.Millisecond + 2*time.Second
			s := startServer(t, fmt.Sprintf("TOKEN_TTL=%d", int(ttl.Seconds())))
			first := openSeamedPage(t, s, onDemand, clockStart{})
			first.quickSignIn()
			first.sayOK("One tab mints the first token.")
			tabs := []*page{first}
			for range c.tabs - 1 {
				tabs = append(tabs, first.openTabLike(onDemand, clockStart{}))
			}
			for i, p := range tabs[1:] {
				if app := eval[string](p.b, "app state", "document.body.dataset.app"); app != "signed-in" {
					t.Fatalf("tab %d is %q; the shared session cookie should sign it in", i+2, app)
				}
			}

			// Every tab sees the token as expired (a tab that never minted has none).
			time.Sleep(ttl + 200*time.Millisecond)
			for _, p := range tabs {
				p.setRules(netRule{Path: "/api/token", DelayMs: c.delayMs})
			}
			mark := s.Mark()

			// All tabs call at the same wall-clock instant, 300 ms from now.
			at := time.Now().Add(300 * time.Millisecond).UnixMilli()
			results := make([]speech, len(tabs))
			var wg sync.WaitGroup
			for i, p := range tabs {
				wg.Go(func() {
					r, err := evalErr[speech](p.b, fmt.Sprintf(`(async () => {
						await new Promise((resolve) => setTimeout(resolve, %d - Date.now()));
						return __speak("Tab %d speaks.");
					})()`, at, i+1))
					if err != nil {
						r.Code = err.Error()
					}
					results[i] = r
				})
			}
			wg.Wait()

			format := outputFormat{Container: "raw", Encoding: "pcm_s16le", SampleRate: 16000}
			for i, r := range results {
				want := fmt.Sprintf("Tab %d speaks.", i+1)
				if !r.OK {
					t.Errorf("tab %d: the call failed with %s (status %d)", i+1, r.Code, r.Status)
					continue
				}
				if got := decodeSpeech(t, decodeBase64(t, r.Audio), format); got != want {
					t.Errorf("tab %d: the audio decodes to %q, want %q", i+1, got, want)
				}
			}
			lines := s.waitCount(t, mark, len(tabs), stepTimeout, isProxied("tts"))
			if n := countLines(lines, isMint("tts")); n != 1 {
				t.Errorf("%d tts tokens minted for %d tabs calling at once, want 1", n, len(tabs))
			}
			if n := countLines(lines, isRejected("tts")); n != 0 {
				t.Errorf("%d calls were rejected first; want none", n)
			}
			for _, p := range tabs[1:] {
				if errs := p.events("refresherror", "sessionend"); len(errs) != 0 {
					t.Errorf("a waiting tab reported %s", eventTypes(errs))
				}
			}
			first.finish(s, fmt.Sprintf("tabs-%d", c.tabs))
		})
	}
}

// TestB24B25ClosingTheRefreshingTabLeavesNoTabWaiting starts a refresh in one tab whose
// token request never finishes, makes a call in a second tab (which waits for the first
// tab's refresh), and closes the first tab. The browser releases the closed tab's lock;
// the second tab finds no sibling result, refreshes itself and its call succeeds.
func TestB24B25ClosingTheRefreshingTabLeavesNoTabWaiting(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	waiting := openSeamedPage(t, s, onDemand, clockStart{})
	waiting.quickSignIn()
	// The refreshing tab is the second one: closing the first would close the browser.
	refreshing := waiting.openTabLike(onDemand, clockStart{})

	// The refreshing tab's token request hangs (it never reaches the server).
	refreshing.setRules(netRule{Path: "/api/token", DelayMs: 600_000})
	eval[bool](refreshing.b, "start a refresh that hangs",
		`(voxgateDemo.client.tokens.refresh("tts").catch(() => {}), true)`)
	refreshing.b.waitFor("the hanging request is out", `(__net.tokens.tts || 0) === 1`,
		stepTimeout)

	mark := s.Mark()
	call := make(chan speech, 1)
	go func() {
		r, err := evalErr[speech](waiting.b, `__speak("The waiting tab is not stuck.")`)
		if err != nil {
			r.Code = err.Error()
		}
		call <- r
	}()

	// Give the waiting tab time to queue behind the other tab's refresh, then close that.
	time.Sleep(700 * time.Millisecond)
	refreshing.closeTab()

	select {
	case r := <-call:
		if !r.OK {
			t.Fatalf("the waiting tab's call failed with %s (status %d)", r.Code, r.Status)
		}
	case <-time.After(stepTimeout):
		t.Fatal("the waiting tab is still waiting after the refreshing tab closed")
	}
	lines := s.waitCount(t, mark, 1, stepTimeout, isProxied("tts"))
	if n := countLines(lines, isMint("tts")); n != 1 {
		t.Errorf("%d tts mints, want 1 (the waiting tab's own)", n)
	}
	if n := waiting.tokenRequests("tts"); n != 1 {
		t.Errorf("the waiting tab sent %d tts token requests, want 1", n)
	}
	waiting.finish(s, "closed-tab")
}
