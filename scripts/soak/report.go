package main

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// snapshot is what one tab's driver counted (voxgateSoak.snapshot() in driver.js).
type snapshot struct {
	ElapsedMs     float64                   `json:"elapsedMs"`
	Inflight      int                       `json:"inflight"`
	MaxInflight   int                       `json:"maxInflight"`
	Done          bool                      `json:"done"`
	Kinds         map[string]kindStats      `json:"kinds"`
	Events        map[string]map[string]int `json:"events"`        // type -> grant -> n
	Refreshes     map[string]map[string]int `json:"refreshes"`     // grant -> reason -> n
	RefreshErrors map[string]map[string]int `json:"refreshErrors"` // grant -> code -> n
	Samples       []failureSample           `json:"samples"`
	Tokens        []tokenState              `json:"tokens"`
	Visibility    string                    `json:"visibility"`
}

// kindStats counts one kind of call in one tab.
type kindStats struct {
	Calls   int            `json:"calls"`
	OK      int            `json:"ok"`
	Failed  int            `json:"failed"`
	Codes   map[string]int `json:"codes"`
	TotalMs float64        `json:"totalMs"`
	MaxMs   float64        `json:"maxMs"`
}

// failureSample is one failed call as the page saw it.
type failureSample struct {
	Kind    string `json:"kind"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// tokenState is the part of the client's TokenState the report uses.
type tokenState struct {
	Grant      string  `json:"grant"`
	LifetimeMs float64 `json:"lifetimeMs"`
	MarginMs   float64 `json:"marginMs"`
	Refreshes  int     `json:"refreshes"`
	Valid      bool    `json:"valid"`
	Direct     bool    `json:"direct"` // held in wasm memory, minted at /api/token/direct
}

// totals are the calls and failures of the tab so far.
func (s snapshot) totals() (calls, failed int) {
	for _, k := range s.Kinds {
		calls, failed = calls+k.Calls, failed+k.Failed
	}
	return calls, failed
}

// serverTally is what the server's log says about the soak window.
type serverTally struct {
	Mints        map[string]int         // grant -> token_minted events
	DirectMints  map[string]int         // grant -> token_issued_direct events
	MintFailures map[string]int         // reason -> token_mint_failed events
	Proxied      map[string]int         // grant -> proxy events
	Rejected     map[string]map[int]int // grant -> status >= 400 -> proxy events
	Security     map[string]int         // reason -> security_rejected events
	// Upstream counts the built-in emulator's requests that carried an access token, per
	// grant: the proxy's calls in the proxy soak, the pages' own in the direct soak.
	Upstream         map[string]int
	UpstreamRejected map[string]map[int]int // grant -> status >= 400 -> emulator requests
}

// emulatorGrants maps the emulator's route names (its "route" log key) to the grant each
// needs; its other routes (access_token, info, preflight, not_found) need none.
var emulatorGrants = map[string]string{
	"tts_bytes": "tts", "tts_sse": "tts", "tts_websocket": "tts",
	"stt_websocket": "stt", "stt_turns": "stt", "stt_batch": "stt",
	"audio_transcriptions": "stt",
	"agent_stream":         "agent",
}

// tallyLog counts the server's JSON log events, the built-in emulator's among them.
func tallyLog(lines []map[string]any) serverTally {
	t := serverTally{Mints: map[string]int{}, DirectMints: map[string]int{},
		MintFailures: map[string]int{}, Proxied: map[string]int{},
		Rejected: map[string]map[int]int{}, Security: map[string]int{},
		Upstream: map[string]int{}, UpstreamRejected: map[string]map[int]int{}}
	for _, l := range lines {
		grant, _ := l["grant"].(string)
		reason, _ := l["reason"].(string)
		status, _ := l["status"].(float64)
		switch l["msg"] {
		case "token_minted":
			t.Mints[grant]++
		case "token_issued_direct":
			t.DirectMints[grant]++
		case "token_mint_failed":
			t.MintFailures[reason]++
		case "security_rejected":
			t.Security[reason]++
		case "proxy":
			t.Proxied[grant]++
			if status >= 400 {
				countStatus(t.Rejected, grant, int(status))
			}
		case "emulator request":
			route, _ := l["route"].(string)
			grant, ok := emulatorGrants[route]
			if !ok {
				continue
			}
			if l["credential"] == "access_token" {
				t.Upstream[grant]++
			}
			if status >= 400 {
				countStatus(t.UpstreamRejected, grant, int(status))
			}
		}
	}
	return t
}

func countStatus(m map[string]map[int]int, grant string, status int) {
	if m[grant] == nil {
		m[grant] = map[int]int{}
	}
	m[grant][status]++
}

// totalMints counts every mint, cookie and direct, for the progress line.
func (t serverTally) totalMints() int {
	return sum(t.Mints) + sum(t.DirectMints)
}

// result is one soak run.
type result struct {
	Date     time.Time
	Machine  machine
	Settings settings
	Elapsed  time.Duration // from the first call to the last call's end
	Tabs     []snapshot
	Server   serverTally // the log until the calls ended: mints are counted here
	// Final is the whole log until the server stopped, for what must not happen at all
	// (a proxy line for a direct grant) and what a call logs only at its end.
	Final     serverTally
	Leaks     leaks    // lines the server printed with an emulator token's prefix
	Exception []string // uncaught exceptions and CSP violations in the pages
	Tree      string   // the commit the run was built from, and whether it had changes
}

func (r *result) calls() int {
	n := 0
	for _, k := range r.Kinds() {
		n += k.Calls
	}
	return n
}

func (r *result) maxInflight() string {
	v := make([]int, 0, len(r.Tabs))
	for _, tab := range r.Tabs {
		v = append(v, tab.MaxInflight)
	}
	return ints(v)
}

// grants are reported in this order.
var grants = []string{"tts", "stt", "agent"}

// grantOf is the grant a kind of call needs: the part of its name before the dot.
func grantOf(kind string) string {
	g, _, _ := strings.Cut(kind, ".")
	return g
}

// expiryCodes are the failures the soak exists to rule out: a call that reached the app
// with its token expired or missing.
var expiryCodes = map[string]bool{"token_expired": true, "no_token": true}

// tolerance is how far the mints of a grant may be from the ideal: a fifth, plus one for
// the first mint (the ideal counts lifetimes, the first token is minted at zero). Fewer
// mints than that would mean calls went out with tokens inside their margin; more, that
// tokens were replaced early or refreshed twice.
const tolerance = 0.2

// grantRow is one grant's line of the token table.
type grantRow struct {
	Grant     string
	Calls     int
	OK        int
	Tabs      int // tabs that made calls with this grant
	Lifetime  time.Duration
	Margin    time.Duration
	Ideal     float64 // elapsed / usable lifetime (times Tabs in direct mode)
	Mints     int     // token_minted at the server (token_issued_direct in direct mode)
	Refreshes []int   // "refresh" events, per tab
	Reasons   map[string]int
	Errors    map[string]int // refresherror codes, all tabs
	Expiring  int
	Expired   int
	Rejected  map[int]int // proxy answers >= 400

	// Direct mode only: what must stay zero (cookie-token mints, proxy lines, token
	// states a tab reported as not direct) and the emulator's view of the pages' calls.
	CookieMints      int
	Proxied          int
	NotDirect        int
	Upstream         int
	UpstreamRejected map[int]int
}

// Usable is the part of a token's lifetime a call may use it in.
func (g grantRow) Usable() time.Duration { return g.Lifetime - g.Margin }

// Ratio is mints over the ideal; 0 for an unused grant.
func (g grantRow) Ratio() float64 {
	if g.Ideal <= 0 {
		return 0
	}
	return float64(g.Mints) / g.Ideal
}

// Close reports whether the mints are within tolerance of the ideal.
func (g grantRow) Close() bool {
	return math.Abs(float64(g.Mints)-g.Ideal) <= tolerance*g.Ideal+1
}

// idealMints is the fewest tokens that cover elapsed with each used for its usable part.
func idealMints(elapsed, usable time.Duration) float64 {
	if usable <= 0 {
		return 0
	}
	return elapsed.Seconds() / usable.Seconds()
}

// defaultMargin is the client's documented default, min(30 s, lifetime / 5), for when the
// page reported no token state for a grant.
func defaultMargin(lifetime time.Duration) time.Duration {
	return min(30*time.Second, lifetime/5)
}

// Grants builds the token table: one row per grant.
func (r *result) Grants() []grantRow {
	rows := make([]grantRow, 0, len(grants))
	for _, g := range grants {
		row := grantRow{Grant: g, Mints: r.Server.Mints[g], Reasons: map[string]int{},
			Errors: map[string]int{}, Rejected: r.Server.Rejected[g],
			Lifetime: time.Duration(r.Settings.TTL) * time.Second}
		if r.Settings.Direct {
			row.Mints, row.CookieMints = r.Server.DirectMints[g], r.Server.Mints[g]
			row.Rejected = r.Final.Rejected[g]
			row.Proxied = r.Final.Proxied[g]
			row.Upstream = r.Final.Upstream[g]
			row.UpstreamRejected = r.Final.UpstreamRejected[g]
		}
		row.Margin = defaultMargin(row.Lifetime)
		for _, tab := range r.Tabs {
			used := false
			for kind, k := range tab.Kinds {
				if grantOf(kind) == g {
					row.Calls += k.Calls
					row.OK += k.OK
					used = used || k.Calls > 0
				}
			}
			if used {
				row.Tabs++
			}
			n := 0
			for reason, c := range tab.Refreshes[g] {
				row.Reasons[reason] += c
				n += c
			}
			row.Refreshes = append(row.Refreshes, n)
			for code, c := range tab.RefreshErrors[g] {
				row.Errors[code] += c
			}
			row.Expiring += tab.Events["expiring"][g]
			row.Expired += tab.Events["expired"][g]
			for _, s := range tab.Tokens {
				if s.Grant == g && s.LifetimeMs > 0 {
					row.Lifetime = time.Duration(s.LifetimeMs) * time.Millisecond
					row.Margin = time.Duration(s.MarginMs) * time.Millisecond
					if !s.Direct {
						row.NotDirect++
					}
				}
			}
		}
		if row.Calls > 0 {
			row.Ideal = idealMints(r.Elapsed, row.Usable())
			if r.Settings.Direct {
				// Direct tokens are never shared between tabs: each keeps its own.
				row.Ideal *= float64(row.Tabs)
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// kindRow is one kind's line of the calls table, all tabs together.
type kindRow struct {
	Kind              string
	Calls, OK, Failed int
	Codes             map[string]int
	MeanMs, MaxMs     float64
	ExpiryFailures    int
	totalMs           float64
}

// Kinds builds the calls table, sorted by kind.
func (r *result) Kinds() []kindRow {
	byKind := map[string]*kindRow{}
	for _, tab := range r.Tabs {
		for kind, k := range tab.Kinds {
			row := byKind[kind]
			if row == nil {
				row = &kindRow{Kind: kind, Codes: map[string]int{}}
				byKind[kind] = row
			}
			row.Calls += k.Calls
			row.OK += k.OK
			row.Failed += k.Failed
			row.totalMs += k.TotalMs
			row.MaxMs = max(row.MaxMs, k.MaxMs)
			for code, n := range k.Codes {
				row.Codes[code] += n
				if expiryCodes[code] {
					row.ExpiryFailures += n
				}
			}
		}
	}
	rows := make([]kindRow, 0, len(byKind))
	for _, kind := range slices.Sorted(maps.Keys(byKind)) {
		row := *byKind[kind]
		if row.Calls > 0 {
			row.MeanMs = row.totalMs / float64(row.Calls)
		}
		rows = append(rows, row)
	}
	return rows
}

// verdict is the run's outcome and every reason it failed.
type verdict struct {
	Pass     bool
	Summary  string
	Problems []string
}

// Verdict passes a run in which every call succeeded, none failed on expiry, every grant
// used minted close to the ideal, and the pages threw nothing.
func (r *result) Verdict() verdict {
	var problems []string
	calls, failed, expiry := 0, 0, 0
	for _, k := range r.Kinds() {
		calls, failed, expiry = calls+k.Calls, failed+k.Failed, expiry+k.ExpiryFailures
	}
	if calls == 0 {
		problems = append(problems, "no calls were made")
	}
	if expiry > 0 {
		problems = append(problems, fmt.Sprintf("%d calls failed on an expired or missing token",
			expiry))
	}
	if other := failed - expiry; other > 0 {
		problems = append(problems, fmt.Sprintf("%d calls failed for other reasons", other))
	}
	for _, g := range r.Grants() {
		if g.Calls == 0 {
			continue
		}
		if g.Usable() <= 0 {
			problems = append(problems, fmt.Sprintf("%s: margin %s leaves no usable lifetime",
				g.Grant, g.Margin))
			continue
		}
		if !g.Close() {
			mints := "mints"
			if r.Settings.Direct {
				mints = "direct mints"
			}
			problems = append(problems, fmt.Sprintf("%s: %d %s, ideal %.1f (ratio %.2f, "+
				"outside ±%.0f%% + 1)", g.Grant, g.Mints, mints, g.Ideal, g.Ratio(),
				tolerance*100))
		}
		if n := sum(g.Errors); n > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d refresh errors", g.Grant, n))
		}
		if r.Settings.Direct {
			problems = append(problems, g.directProblems()...)
		}
	}
	if r.Settings.Direct {
		if r.Leaks.Lines > 0 {
			problems = append(problems, fmt.Sprintf("the server printed %d lines holding %q, "+
				"the start of every emulator token (%s)", r.Leaks.Lines, tokenPrefix,
				codes(r.Leaks.Events)))
		}
		if n := r.pageLeaks(); n > 0 {
			problems = append(problems, fmt.Sprintf("%d page errors held %q (redacted here)",
				n, tokenPrefix))
		}
	}
	for _, tab := range r.Tabs {
		if n := sum(tab.Events["sessionend"]); n > 0 {
			problems = append(problems, fmt.Sprintf("the session ended %d times", n))
			break
		}
	}
	if n := len(r.Exception); n > 0 {
		problems = append(problems, fmt.Sprintf("the pages logged %d exceptions or CSP "+
			"violations", n))
	}

	v := verdict{Pass: len(problems) == 0, Problems: problems}
	switch {
	case v.Pass && r.Settings.Direct:
		v.Summary = fmt.Sprintf("PASS: %d calls, none failed; every grant's direct mints "+
			"within ±%.0f%% (+1) of tabs × elapsed ÷ usable; no proxy line, no cookie token "+
			"and no %q in the server's output", calls, tolerance*100, tokenPrefix)
	case v.Pass:
		v.Summary = fmt.Sprintf("PASS: %d calls, none failed; every grant minted within "+
			"±%.0f%% (+1) of the ideal", calls, tolerance*100)
	default:
		v.Summary = "FAIL: " + strings.Join(problems, "; ")
	}
	return v
}

// directProblems are a direct grant's breaches of direct mode: the client used the
// proxy's cookie tokens or the proxy itself, a tab held its token outside wasm memory or
// adopted another tab's, or the emulator saw fewer token-carrying calls than succeeded
// (each call kind makes one upstream request; retries add more, never fewer).
func (g grantRow) directProblems() []string {
	var problems []string
	if g.CookieMints > 0 {
		problems = append(problems, fmt.Sprintf("%s: %d token_minted events (cookie tokens) "+
			"for a direct grant", g.Grant, g.CookieMints))
	}
	if g.Proxied > 0 {
		problems = append(problems, fmt.Sprintf("%s: %d proxy lines for a direct grant",
			g.Grant, g.Proxied))
	}
	if g.NotDirect > 0 {
		problems = append(problems, fmt.Sprintf("%s: %d tabs held a token that is not direct",
			g.Grant, g.NotDirect))
	}
	if n := g.Reasons["shared"]; n > 0 {
		problems = append(problems, fmt.Sprintf("%s: %d refreshes adopted from another tab "+
			"(direct tokens are never shared)", g.Grant, n))
	}
	if g.Upstream < g.OK {
		problems = append(problems, fmt.Sprintf("%s: the emulator saw %d calls with an "+
			"access token, fewer than the %d that succeeded", g.Grant, g.Upstream, g.OK))
	}
	return problems
}

// pageLeaks counts the failure messages and page exceptions that hold tokenPrefix.
func (r *result) pageLeaks() int {
	n := 0
	for _, tab := range r.Tabs {
		for _, f := range tab.Samples {
			if strings.Contains(f.Message, tokenPrefix) {
				n++
			}
		}
	}
	for _, e := range r.Exception {
		if strings.Contains(e, tokenPrefix) {
			n++
		}
	}
	return n
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// codes formats failure codes as "code×n, ...", most frequent first; "—" for none.
func codes(m map[string]int) string {
	if len(m) == 0 {
		return "—"
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func statuses(m map[int]int) string {
	if len(m) == 0 {
		return "—"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func ints(v []int) string {
	parts := make([]string, 0, len(v))
	for _, n := range v {
		parts = append(parts, fmt.Sprint(n))
	}
	return strings.Join(parts, " / ")
}

func seconds(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", d.Seconds()), "0"), ".") + " s"
}

// callsTable is the calls table in Markdown.
func (r *result) callsTable() string {
	var b strings.Builder
	b.WriteString("| kind | calls | ok | failed | on expiry | failure codes | mean ms | max ms |\n")
	b.WriteString("|---|---:|---:|---:|---:|---|---:|---:|\n")
	var total kindRow
	for _, k := range r.Kinds() {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %.0f | %.0f |\n", k.Kind, k.Calls,
			k.OK, k.Failed, k.ExpiryFailures, codes(k.Codes), k.MeanMs, k.MaxMs)
		total.Calls, total.OK, total.Failed = total.Calls+k.Calls, total.OK+k.OK,
			total.Failed+k.Failed
		total.ExpiryFailures += k.ExpiryFailures
	}
	fmt.Fprintf(&b, "| **all** | **%d** | **%d** | **%d** | **%d** | | | |\n", total.Calls,
		total.OK, total.Failed, total.ExpiryFailures)
	return b.String()
}

// tokensTable is the token table in Markdown.
func (r *result) tokensTable() string {
	var b strings.Builder
	b.WriteString("| grant | calls | lifetime | margin | usable | ideal mints | server mints | " +
		"ratio | client refreshes per tab | refresh reasons | refresh errors | " +
		"expiring / expired events | proxy answers ≥ 400 |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|\n")
	for _, g := range r.Grants() {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.1f | %d | %.2f | %s | %s | %s | %d / %d | %s |\n",
			g.Grant, g.Calls, seconds(g.Lifetime), seconds(g.Margin), seconds(g.Usable()),
			g.Ideal, g.Mints, g.Ratio(), ints(g.Refreshes), codes(g.Reasons), codes(g.Errors),
			g.Expiring, g.Expired, statuses(g.Rejected))
	}
	return b.String()
}

// directTokensTable is the token table of a direct run in Markdown: the mints are the
// server's token_issued_direct events, and the columns on the right must read zero.
func (r *result) directTokensTable() string {
	var b strings.Builder
	b.WriteString("| grant | calls | tabs | lifetime | margin | usable | ideal mints | " +
		"direct mints | ratio | client refreshes per tab | refresh reasons | " +
		"refresh errors | expiring / expired events | emulator calls with a token | " +
		"emulator answers ≥ 400 | token_minted | proxy lines | tabs not direct |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---|" +
		"---:|---:|---:|\n")
	for _, g := range r.Grants() {
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %.1f | %d | %.2f | %s | %s | %s | "+
			"%d / %d | %d | %s | %d | %d | %d |\n",
			g.Grant, g.Calls, g.Tabs, seconds(g.Lifetime), seconds(g.Margin),
			seconds(g.Usable()), g.Ideal, g.Mints, g.Ratio(), ints(g.Refreshes),
			codes(g.Reasons), codes(g.Errors), g.Expiring, g.Expired, g.Upstream,
			statuses(g.UpstreamRejected), g.CookieMints, g.Proxied, g.NotDirect)
	}
	return b.String()
}

// Table is the plain report printed at the end of a run.
func (r *result) Table() string {
	var b strings.Builder
	mode, tokens := "", r.tokensTable
	if r.Settings.Direct {
		mode, tokens = ", direct mode", r.directTokensTable
	}
	fmt.Fprintf(&b, "\nsoak: %s elapsed, %d tabs, TOKEN_TTL %d s%s\n\n",
		r.Elapsed.Round(time.Millisecond), len(r.Tabs), r.Settings.TTL, mode)
	b.WriteString(r.callsTable())
	b.WriteString("\n")
	b.WriteString(tokens())
	b.WriteString("\n")
	b.WriteString(r.Verdict().Summary)
	b.WriteString("\n")
	return b.String()
}

// Markdown is RESULTS.md (RESULTS-direct.md in direct mode): date, machine, settings, the
// tables and the verdict.
func (r *result) Markdown() string {
	if r.Settings.Direct {
		return r.directMarkdown()
	}
	var b strings.Builder
	v := r.Verdict()
	s := r.Settings
	m := r.Machine

	b.WriteString("# Token soak test: results\n\n")
	b.WriteString("Written by `make soak` (`go run ./scripts/soak`); every run replaces this " +
		"file. The soak runs `bin/server` with the built-in emulator on 127.0.0.1, opens the " +
		"demo page in headless Chromium, signs in, and has the page's voxgate client make " +
		"calls of every kind at random intervals while tokens expire every few seconds. " +
		"Every call checks what came back: TTS audio has the exact length of the phrase's " +
		"tone code, STT transcripts equal the phrase, the agent's answer has the length of " +
		"\"You said: <phrase>\" and it echoes a keypad digit.\n\n")

	fmt.Fprintf(&b, "- **Date:** %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine:** %s, %d cores, %.1f GB, %s; %s; %s\n", m.CPU, m.Cores,
		m.MemoryGB, m.OS, m.Go, m.Chromium)
	fmt.Fprintf(&b, "- **Settings:** duration %s (elapsed %s with the calls in flight at the "+
		"end), TOKEN_TTL %d s, TOKEN_MINT_RATE %d/min, %d tabs sharing one session "+
		"(visibility: %s), %d call loops per tab, random pause 0–%s between one loop's "+
		"calls, client defaults (proactive refresh, default margin)\n",
		s.Duration, r.Elapsed.Round(time.Millisecond), s.TTL, s.MintRate, len(r.Tabs),
		r.visibility(), s.Workers, 2*s.Gap)
	fmt.Fprintf(&b, "- **Tree:** %s\n", cmp.Or(r.Tree, "unknown"))
	fmt.Fprintf(&b, "- **Load:** %d calls in %s, %.1f a second; at most %s calls in flight "+
		"per tab\n", r.calls(), r.Elapsed.Round(time.Second),
		float64(r.calls())/max(r.Elapsed.Seconds(), 1), r.maxInflight())
	fmt.Fprintf(&b, "- **Verdict:** %s\n\n", v.Summary)

	b.WriteString("## Calls\n\n")
	b.WriteString("\"On expiry\" counts calls whose error reached the app as `token_expired` " +
		"or `no_token`: the client is meant to make that zero.\n\n")
	b.WriteString(r.callsTable())

	b.WriteString("\n## Tokens\n\n")
	b.WriteString("Ideal mints = elapsed ÷ usable lifetime (lifetime − margin) for each grant " +
		"the calls used. Server mints are the server's `token_minted` log events in the " +
		"window; client refreshes are the `refresh` events each tab saw (a tab that adopts a " +
		"token another tab minted may or may not report it, depending on the client). " +
		"Ratio = server mints ÷ ideal; the verdict wants it within ±" +
		fmt.Sprintf("%.0f%%", tolerance*100) + " (+1).\n\n")
	b.WriteString(r.tokensTable())

	r.writeEnd(&b, v)
	return b.String()
}

// directMarkdown is RESULTS-direct.md.
func (r *result) directMarkdown() string {
	var b strings.Builder
	v := r.Verdict()
	s := r.Settings
	m := r.Machine

	b.WriteString("# Token soak test, direct mode: results\n\n")
	b.WriteString("Written by `make soak-direct` (`go run ./scripts/soak -direct`); every run " +
		"replaces this file. The soak runs `bin/server` with the built-in emulator on " +
		"127.0.0.1 and `DIRECT_GRANTS=" + strings.Join(directGrants, ",") + "`, opens the " +
		"demo page in headless Chromium, signs in, and has the page's voxgate client make " +
		"calls of every kind at random intervals while tokens expire every few seconds. In " +
		"direct mode each tab mints its own tokens at `POST /api/token/direct`, keeps them " +
		"in wasm memory and calls the emulator's loopback address itself, so the server " +
		"should log a `token_issued_direct` per mint and no `proxy` line. Every call checks " +
		"what came back, as in the proxy soak (`RESULTS.md`). The soak never sees a direct " +
		"token (the page does not expose it); it looks for `" + tokenPrefix + "`, the start " +
		"of every emulator token, in every line the server prints.\n\n")

	fmt.Fprintf(&b, "- **Date:** %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine:** %s, %d cores, %.1f GB, %s; %s; %s\n", m.CPU, m.Cores,
		m.MemoryGB, m.OS, m.Go, m.Chromium)
	fmt.Fprintf(&b, "- **Settings:** duration %s (elapsed %s with the calls in flight at the "+
		"end), DIRECT_GRANTS %s, DIRECT_TOKEN_TTL and TOKEN_TTL %d s, DIRECT_MINT_RATE "+
		"%d/min, TOKEN_MINT_RATE %d/min, %d tabs sharing one session but not their direct "+
		"tokens (visibility: %s), %d call loops per tab, random pause 0–%s between one "+
		"loop's calls, client defaults (proactive refresh, default margin, direct mode on)\n",
		s.Duration, r.Elapsed.Round(time.Millisecond), strings.Join(directGrants, ","), s.TTL,
		s.DirectMintRate, s.MintRate, len(r.Tabs), r.visibility(), s.Workers, 2*s.Gap)
	fmt.Fprintf(&b, "- **Tree:** %s\n", cmp.Or(r.Tree, "unknown"))
	fmt.Fprintf(&b, "- **Load:** %d calls in %s, %.1f a second; at most %s calls in flight "+
		"per tab\n", r.calls(), r.Elapsed.Round(time.Second),
		float64(r.calls())/max(r.Elapsed.Seconds(), 1), r.maxInflight())
	fmt.Fprintf(&b, "- **Verdict:** %s\n\n", v.Summary)

	b.WriteString("## Calls\n\n")
	b.WriteString("\"On expiry\" counts calls whose error reached the app as `token_expired` " +
		"or `no_token` (a direct call reports an upstream 401 as `token_expired`, after one " +
		"retry with a fresh token): the client is meant to make that zero.\n\n")
	b.WriteString(r.callsTable())

	b.WriteString("\n## Tokens\n\n")
	b.WriteString("Tabs do not share direct tokens, so ideal mints = tabs × elapsed ÷ usable " +
		"lifetime (lifetime − margin) for each grant the calls used. Direct mints are the " +
		"server's `token_issued_direct` events while calls ran; client refreshes are the " +
		"`refresh` events each tab saw, and none may be `shared`. Ratio = direct mints ÷ " +
		"ideal; the verdict wants it within ±" + fmt.Sprintf("%.0f%%", tolerance*100) +
		" (+1). Read from the whole log until the server stopped: emulator calls with a " +
		"token (the pages' own; the verdict wants at least one per successful call) and " +
		"the emulator's answers ≥ 400; `token_minted` events (cookie tokens) and `proxy` " +
		"lines for the grant, and tabs whose token state was not `direct`, which must all " +
		"be zero.\n\n")
	b.WriteString(r.directTokensTable())

	b.WriteString("\n## Token exposure\n\n")
	fmt.Fprintf(&b, "- Server stdout and stderr lines holding `%s`: %d%s\n", tokenPrefix,
		r.Leaks.Lines, leakWhere(r.Leaks))
	fmt.Fprintf(&b, "- Page errors holding `%s`: %d\n", tokenPrefix, r.pageLeaks())

	r.writeEnd(&b, v)
	return b.String()
}

func leakWhere(l leaks) string {
	if l.Lines == 0 {
		return ""
	}
	return " (" + codes(l.Events) + ")"
}

// writeEnd writes the sections both reports end with: rejections, failures, why it failed.
func (r *result) writeEnd(b *strings.Builder, v verdict) {
	if len(r.Server.MintFailures) > 0 || len(r.Server.Security) > 0 {
		b.WriteString("\n## Server rejections\n\n")
		fmt.Fprintf(b, "- token_mint_failed: %s\n", codes(r.Server.MintFailures))
		fmt.Fprintf(b, "- security_rejected: %s\n", codes(r.Server.Security))
	}

	samples := r.samples()
	if len(samples) > 0 || len(r.Exception) > 0 {
		b.WriteString("\n## Failures seen\n\n")
		for _, f := range samples {
			fmt.Fprintf(b, "- %s: `%s`: %s\n", f.Kind, f.Code, oneLine(f.Message))
		}
		for _, e := range r.Exception {
			fmt.Fprintf(b, "- page: %s\n", oneLine(e))
		}
	}
	if !v.Pass {
		b.WriteString("\n## Why it failed\n\n")
		for _, p := range v.Problems {
			fmt.Fprintf(b, "- %s\n", p)
		}
	}
}

// samples are the first failures of every tab, at most 20.
func (r *result) samples() []failureSample {
	var all []failureSample
	for _, tab := range r.Tabs {
		all = append(all, tab.Samples...)
	}
	return all[:min(len(all), 20)]
}

func (r *result) visibility() string {
	parts := make([]string, 0, len(r.Tabs))
	for _, tab := range r.Tabs {
		parts = append(parts, cmp.Or(tab.Visibility, "unknown"))
	}
	return strings.Join(parts, " / ")
}

// tokenLike is what an emulator token looks like: its prefix and the base64url and dot
// characters after it.
var tokenLike = regexp.MustCompile(tokenPrefix + `[A-Za-z0-9_.-]*`)

// oneLine keeps a message on one Markdown line and short, and keeps tokens out of it: a
// results file is committed.
func oneLine(s string) string {
	s = tokenLike.ReplaceAllString(s, "[token]")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}
