package main

import (
	"strings"
	"testing"
	"time"
)

func TestIdealMintsIsElapsedOverUsableLifetime(t *testing.T) {
	cases := []struct {
		name    string
		elapsed time.Duration
		usable  time.Duration
		want    float64
	}{
		{"three minutes of 3.2 s tokens", 3 * time.Minute, 3200 * time.Millisecond, 56.25},
		{"shorter than one token", time.Second, 4 * time.Second, 0.25},
		{"no usable lifetime", time.Minute, 0, 0},
		{"negative usable lifetime", time.Minute, -time.Second, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := idealMints(c.elapsed, c.usable); got != c.want {
				t.Errorf("idealMints(%s, %s) = %v, want %v", c.elapsed, c.usable, got, c.want)
			}
		})
	}
}

func TestMintsAreCloseWithinAFifthPlusOne(t *testing.T) {
	cases := []struct {
		mints int
		ideal float64
		want  bool
	}{
		{56, 56.25, true},
		{68, 56.25, true},  // 11.75 over: inside 0.2*56.25+1 = 12.25
		{69, 56.25, false}, // 12.75 over
		{45, 56.25, true},  // 11.25 under
		{43, 56.25, false}, // 13.25 under: tokens were used inside their margin
		{112, 56.25, false},
		{1, 0.25, true}, // the first mint of a short run
	}
	for _, c := range cases {
		row := grantRow{Mints: c.mints, Ideal: c.ideal}
		if got := row.Close(); got != c.want {
			t.Errorf("%d mints for ideal %.2f: close = %v, want %v", c.mints, c.ideal, got, c.want)
		}
	}
}

func TestTallyLogCountsMintsRejectionsAndProxyErrors(t *testing.T) {
	lines := []map[string]any{
		{"msg": "listening", "url": "http://127.0.0.1:1"},
		{"msg": "token_minted", "grant": "tts"},
		{"msg": "token_minted", "grant": "tts"},
		{"msg": "token_minted", "grant": "stt"},
		{"msg": "token_mint_failed", "reason": "upstream_timeout", "grant": "stt"},
		{"msg": "security_rejected", "reason": "mint_rate_limited"},
		{"msg": "proxy", "grant": "tts", "status": float64(200)},
		{"msg": "proxy", "grant": "tts", "status": float64(401)},
		{"msg": "proxy", "grant": "agent", "status": float64(101)},
	}
	got := tallyLog(lines)
	if got.Mints["tts"] != 2 || got.Mints["stt"] != 1 || got.totalMints() != 3 {
		t.Errorf("mints = %v, want tts 2 and stt 1", got.Mints)
	}
	if got.MintFailures["upstream_timeout"] != 1 || got.Security["mint_rate_limited"] != 1 {
		t.Errorf("failures = %v, security = %v", got.MintFailures, got.Security)
	}
	if got.Proxied["tts"] != 2 || got.Rejected["tts"][401] != 1 || len(got.Rejected["agent"]) != 0 {
		t.Errorf("proxied = %v, rejected = %v", got.Proxied, got.Rejected)
	}
}

// soakResult is a two-tab run of 160 s with 4 s tokens (usable 3.2 s: ideal 50 mints).
func soakResult(mints int, failures map[string]int) *result {
	tab := func(ok int) snapshot {
		codes := map[string]int{}
		if n := failures["tts"]; n > 0 {
			codes["token_expired"] = n
		}
		return snapshot{
			Kinds: map[string]kindStats{
				"tts.bytes": {Calls: ok + failures["tts"], OK: ok, Failed: failures["tts"],
					Codes: codes},
			},
			Refreshes: map[string]map[string]int{"tts": {"proactive": mints / 2}},
			Tokens:    []tokenState{{Grant: "tts", LifetimeMs: 4000, MarginMs: 800}},
		}
	}
	return &result{
		Settings: settings{TTL: 4, Duration: 160 * time.Second},
		Elapsed:  160 * time.Second,
		Tabs:     []snapshot{tab(100), tab(100)},
		Server:   serverTally{Mints: map[string]int{"tts": mints}},
	}
}

func TestVerdict(t *testing.T) {
	cases := []struct {
		name     string
		result   *result
		pass     bool
		problems []string
	}{
		{"ideal mints and no failures pass", soakResult(50, nil), true, nil},
		{"a call failing on expiry fails the run", soakResult(50, map[string]int{"tts": 1}),
			false, []string{"2 calls failed on an expired or missing token"}},
		{"every tab minting for itself fails the run", soakResult(100, nil), false,
			[]string{"tts: 100 mints, ideal 50.0 (ratio 2.00"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := c.result.Verdict()
			if v.Pass != c.pass {
				t.Fatalf("pass = %v, want %v (%s)", v.Pass, c.pass, v.Summary)
			}
			for _, want := range c.problems {
				if !strings.Contains(strings.Join(v.Problems, "\n"), want) {
					t.Errorf("problems %q do not mention %q", v.Problems, want)
				}
			}
		})
	}
}

func TestGrantsUseTheMarginThePageReported(t *testing.T) {
	r := soakResult(50, nil)
	r.Tabs[1].Tokens = []tokenState{{Grant: "tts", LifetimeMs: 4000, MarginMs: 1000}}
	row := r.Grants()[0]
	if row.Grant != "tts" || row.Usable() != 3*time.Second {
		t.Fatalf("row %s: usable %s, want tts with 3 s", row.Grant, row.Usable())
	}
	if row.Calls != 200 || row.Ideal < 53.3 || row.Ideal > 53.4 {
		t.Errorf("calls %d, ideal %.2f; want 200 and 160/3", row.Calls, row.Ideal)
	}
	if got := ints(row.Refreshes); got != "25 / 25" {
		t.Errorf("client refreshes per tab %q, want 25 / 25", got)
	}
	// A grant nobody called has no ideal and does not count against the run.
	if agent := r.Grants()[2]; agent.Calls != 0 || agent.Ideal != 0 {
		t.Errorf("unused agent grant: calls %d, ideal %v", agent.Calls, agent.Ideal)
	}
}

func TestMarkdownHoldsTheSettingsTablesAndVerdict(t *testing.T) {
	r := soakResult(100, nil)
	r.Date = time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	r.Machine = machine{CPU: "Test CPU", Cores: 4, OS: "linux/amd64", Go: "go1.26",
		Chromium: "Chromium 1"}
	md := r.Markdown()
	for _, want := range []string{
		"# Token soak test: results",
		"2026-12-04 17:00 UTC",
		"Test CPU, 4 cores",
		"TOKEN_TTL 4 s",
		"| tts.bytes | 200 | 200 | 0 | 0 | — |",
		"| tts | 200 | 4 s | 0.8 s | 3.2 s | 50.0 | 100 | 2.00 | 50 / 50 |",
		"**Verdict:** FAIL: tts: 100 mints",
		"## Why it failed",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, md)
		}
	}
}

func TestTallyLogCountsDirectMintsAndTheEmulatorsTokenCalls(t *testing.T) {
	lines := []map[string]any{
		{"msg": "token_issued_direct", "grant": "tts", "token_fingerprint": "ab12"},
		{"msg": "token_issued_direct", "grant": "tts"},
		{"msg": "token_issued_direct", "grant": "agent"},
		// The server's own mint at the emulator carries the API key: not a page's call.
		{"msg": "emulator request", "route": "access_token", "credential": "api_key",
			"status": float64(200)},
		{"msg": "emulator request", "route": "tts_bytes", "credential": "access_token",
			"status": float64(200)},
		{"msg": "emulator request", "route": "tts_websocket", "credential": "access_token",
			"status": float64(101)},
		{"msg": "emulator request", "route": "audio_transcriptions",
			"credential": "access_token", "status": float64(401)},
		// A call with no credential at all is refused before it has one.
		{"msg": "emulator request", "route": "stt_batch", "status": float64(401)},
		{"msg": "emulator request", "route": "preflight", "status": float64(204)},
	}
	got := tallyLog(lines)
	if got.DirectMints["tts"] != 2 || got.DirectMints["agent"] != 1 || len(got.Mints) != 0 {
		t.Errorf("direct mints = %v, cookie mints = %v; want tts 2, agent 1 and none",
			got.DirectMints, got.Mints)
	}
	if got.totalMints() != 3 {
		t.Errorf("total mints = %d, want 3", got.totalMints())
	}
	if got.Upstream["tts"] != 2 || got.Upstream["stt"] != 1 || len(got.Upstream) != 2 {
		t.Errorf("emulator calls with a token = %v, want tts 2 and stt 1", got.Upstream)
	}
	if got.UpstreamRejected["stt"][401] != 2 || len(got.UpstreamRejected["tts"]) != 0 {
		t.Errorf("emulator answers >= 400 = %v, want stt 401×2", got.UpstreamRejected)
	}
}

func TestReadLogCountsTokenLinesWithoutKeepingThem(t *testing.T) {
	const tok = "eyJhbGciOiJIUzI1NiJ9.eyJncmFudHMiOnt9fQ.c2ln"
	srv := &server{}
	srv.readLog(strings.NewReader(strings.Join([]string{
		`{"msg":"listening","url":"http://127.0.0.1:1"}`,
		`{"msg":"token_issued_direct","grant":"tts","token_fingerprint":"ab12"}`,
		`{"msg":"proxy","route":"/cartesia/tts/bytes","note":"` + tok + `"}`,
		`panic: ` + tok,
	}, "\n")))
	srv.readOutput(strings.NewReader("URL: http://127.0.0.1:1\ntoken " + tok + "\n"))

	l := srv.Leaks()
	if l.Lines != 3 || l.Events["proxy"] != 1 || l.Events["not json"] != 1 ||
		l.Events["stdout"] != 1 {
		t.Errorf("leaks = %+v, want 3 lines: proxy, not json, stdout", l)
	}
	if got := len(srv.Since(0)); got != 3 {
		t.Errorf("kept %d log events, want the 3 JSON lines", got)
	}
}

// directResult is a two-tab direct run of 160 s with 4 s tokens (usable 3.2 s): each tab
// mints its own, so the ideal is 2 × 50 mints.
func directResult() *result {
	r := soakResult(100, nil)
	r.Settings.Direct = true
	r.Server = serverTally{DirectMints: map[string]int{"tts": 100}}
	r.Final = serverTally{Upstream: map[string]int{"tts": 200}}
	for i := range r.Tabs {
		r.Tabs[i].Tokens[0].Direct = true
	}
	return r
}

func TestDirectVerdict(t *testing.T) {
	cases := []struct {
		name    string
		change  func(r *result)
		problem string // "" for a pass
	}{
		{"tabs × elapsed ÷ usable direct mints pass", func(*result) {}, ""},
		{"tabs sharing tokens mint too few", func(r *result) {
			r.Server.DirectMints["tts"] = 50
		}, "tts: 50 direct mints, ideal 100.0"},
		{"a proxy line for a direct grant fails", func(r *result) {
			r.Final.Proxied = map[string]int{"tts": 1}
		}, "tts: 1 proxy lines"},
		{"a cookie token for a direct grant fails", func(r *result) {
			r.Server.Mints = map[string]int{"tts": 2}
		}, "tts: 2 token_minted events"},
		{"a token in the server's output fails", func(r *result) {
			r.Leaks = leaks{Lines: 1, Events: map[string]int{"proxy": 1}}
		}, `the server printed 1 lines holding "eyJ"`},
		{"a token in a page error fails", func(r *result) {
			r.Exception = []string{"[exception] bad token eyJabc.def.ghi"}
		}, `1 page errors held "eyJ"`},
		{"a tab holding a cookie token fails", func(r *result) {
			r.Tabs[1].Tokens[0].Direct = false
		}, "tts: 1 tabs held a token that is not direct"},
		{"a token adopted from another tab fails", func(r *result) {
			r.Tabs[0].Refreshes["tts"]["shared"] = 3
		}, "tts: 3 refreshes adopted"},
		{"fewer emulator calls than successes fails", func(r *result) {
			r.Final.Upstream["tts"] = 150
		}, "the emulator saw 150 calls with an access token, fewer than the 200"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := directResult()
			c.change(r)
			v := r.Verdict()
			if c.problem == "" {
				if !v.Pass {
					t.Fatalf("verdict %s, want a pass", v.Summary)
				}
				return
			}
			if v.Pass || !strings.Contains(strings.Join(v.Problems, "\n"), c.problem) {
				t.Errorf("problems %q, want one mentioning %q", v.Problems, c.problem)
			}
		})
	}
}

func TestDirectMarkdownNamesTheModeAndRedactsTokens(t *testing.T) {
	r := directResult()
	r.Tabs[0].Samples = []failureSample{{Kind: "tts.bytes", Code: "upstream_error",
		Message: "the upstream answered eyJhbGciOi.eyJzdWIi.sig"}}
	md := r.Markdown()
	for _, want := range []string{
		"# Token soak test, direct mode: results",
		"DIRECT_GRANTS tts,stt,agent, DIRECT_TOKEN_TTL and TOKEN_TTL 4 s",
		"| tts | 200 | 2 | 4 s | 0.8 s | 3.2 s | 100.0 | 100 | 1.00 |",
		"the upstream answered [token]",
		"Page errors holding `eyJ`: 1",
		"## Why it failed",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS-direct.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "eyJhbGci") {
		t.Errorf("RESULTS-direct.md holds the token:\n%s", md)
	}
}
