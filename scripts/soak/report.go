package main

import (
	"cmp"
	"fmt"
	"maps"
	"math"
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
	MintFailures map[string]int         // reason -> token_mint_failed events
	Proxied      map[string]int         // grant -> proxy events
	Rejected     map[string]map[int]int // grant -> status >= 400 -> proxy events
	Security     map[string]int         // reason -> security_rejected events
}

// tallyLog counts the server's JSON log events.
func tallyLog(lines []map[string]any) serverTally {
	t := serverTally{Mints: map[string]int{}, MintFailures: map[string]int{},
		Proxied: map[string]int{}, Rejected: map[string]map[int]int{}, Security: map[string]int{}}
	for _, l := range lines {
		grant, _ := l["grant"].(string)
		reason, _ := l["reason"].(string)
		switch l["msg"] {
		case "token_minted":
			t.Mints[grant]++
		case "token_mint_failed":
			t.MintFailures[reason]++
		case "security_rejected":
			t.Security[reason]++
		case "proxy":
			t.Proxied[grant]++
			if status, _ := l["status"].(float64); status >= 400 {
				if t.Rejected[grant] == nil {
					t.Rejected[grant] = map[int]int{}
				}
				t.Rejected[grant][int(status)]++
			}
		}
	}
	return t
}

func (t serverTally) totalMints() int {
	n := 0
	for _, v := range t.Mints {
		n += v
	}
	return n
}

// result is one soak run.
type result struct {
	Date      time.Time
	Machine   machine
	Settings  settings
	Elapsed   time.Duration // from the first call to the last call's end
	Tabs      []snapshot
	Server    serverTally
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
	Lifetime  time.Duration
	Margin    time.Duration
	Ideal     float64 // elapsed / usable lifetime
	Mints     int     // token_minted at the server
	Refreshes []int   // "refresh" events, per tab
	Reasons   map[string]int
	Errors    map[string]int // refresherror codes, all tabs
	Expiring  int
	Expired   int
	Rejected  map[int]int // proxy answers >= 400
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
		row.Margin = defaultMargin(row.Lifetime)
		for _, tab := range r.Tabs {
			for kind, k := range tab.Kinds {
				if grantOf(kind) == g {
					row.Calls += k.Calls
				}
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
				}
			}
		}
		if row.Calls > 0 {
			row.Ideal = idealMints(r.Elapsed, row.Usable())
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
			problems = append(problems, fmt.Sprintf("%s: %d mints, ideal %.1f (ratio %.2f, "+
				"outside ±%.0f%% + 1)", g.Grant, g.Mints, g.Ideal, g.Ratio(), tolerance*100))
		}
		if n := sum(g.Errors); n > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d refresh errors", g.Grant, n))
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
	if v.Pass {
		v.Summary = fmt.Sprintf("PASS: %d calls, none failed; every grant minted within "+
			"±%.0f%% (+1) of the ideal", calls, tolerance*100)
	} else {
		v.Summary = "FAIL: " + strings.Join(problems, "; ")
	}
	return v
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

// Table is the plain report printed at the end of a run.
func (r *result) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nsoak: %s elapsed, %d tabs, TOKEN_TTL %d s\n\n", r.Elapsed.Round(time.Millisecond),
		len(r.Tabs), r.Settings.TTL)
	b.WriteString(r.callsTable())
	b.WriteString("\n")
	b.WriteString(r.tokensTable())
	b.WriteString("\n")
	b.WriteString(r.Verdict().Summary)
	b.WriteString("\n")
	return b.String()
}

// Markdown is RESULTS.md: date, machine, settings, the tables and the verdict.
func (r *result) Markdown() string {
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

	if len(r.Server.MintFailures) > 0 || len(r.Server.Security) > 0 {
		b.WriteString("\n## Server rejections\n\n")
		fmt.Fprintf(&b, "- token_mint_failed: %s\n", codes(r.Server.MintFailures))
		fmt.Fprintf(&b, "- security_rejected: %s\n", codes(r.Server.Security))
	}

	samples := r.samples()
	if len(samples) > 0 || len(r.Exception) > 0 {
		b.WriteString("\n## Failures seen\n\n")
		for _, f := range samples {
			fmt.Fprintf(&b, "- %s: `%s`: %s\n", f.Kind, f.Code, oneLine(f.Message))
		}
		for _, e := range r.Exception {
			fmt.Fprintf(&b, "- page: %s\n", oneLine(e))
		}
	}
	if !v.Pass {
		b.WriteString("\n## Why it failed\n\n")
		for _, p := range v.Problems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	return b.String()
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

// oneLine keeps a message on one Markdown line and short.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}
