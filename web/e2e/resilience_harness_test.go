//go:build !js

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The resilience tests reproduce the failure kinds of the public bug reports in
// shared/reference/buglog.md (each test names the reports it covers, B##) against the real
// bin/server and the real wasm client. Three seams make that possible without touching
// product code; all three are installed by one script that Chromium runs in every
// document of the tab before any of the page's own scripts (so before wasm_exec.js):
//
//   - window.__clock = {wallOffsetMs, monoOffsetMs} shifts Date (Date.now, new Date(),
//     Date()) and performance.now. Go's runtime reads its wall clock from Date and its
//     monotonic clock from performance.now, so moving both forward is a laptop that slept
//     (or a tab whose timers were throttled), and moving only the wall clock is a client
//     clock that is wrong, or a sleep during which the monotonic clock stood still.
//   - window.__net wraps fetch: it counts every request by path (and /api/token by grant),
//     and rules can delay a request, fail it like a dead network, or answer it with an
//     error in the server's JSON shape without it reaching the server.
//   - window.__events records every client event (the hook is attached once the page has
//     created its client).
//
// Server-side truth comes from the JSON log: token_minted lines count mints and proxy
// lines count forwarded (or rejected) calls.
//
// Limitation: the clock seam moves what scripts read, not the browser's own timers:
// setTimeout still runs on real time, so a jump is a sleep the browser did not notice
// (closest to a sleep during which the tab's timers were suspended). Workers and cookie
// expiry keep the real clock. Fetch rules act in the page, before the network: the server
// never sees a request they answer.
const seamsJS = `(() => {
	const clock = { wallOffsetMs: %d, monoOffsetMs: %d };
	globalThis.__clock = clock;

	const RealDate = Date;
	function ShimDate(...args) {
		if (!new.target) return new RealDate(RealDate.now() + clock.wallOffsetMs).toString();
		return args.length ? new RealDate(...args) : new RealDate(RealDate.now() + clock.wallOffsetMs);
	}
	ShimDate.prototype = RealDate.prototype;
	ShimDate.now = () => RealDate.now() + clock.wallOffsetMs;
	ShimDate.parse = RealDate.parse;
	ShimDate.UTC = RealDate.UTC;
	globalThis.Date = ShimDate;

	const realNow = performance.now.bind(performance);
	performance.now = () => realNow() + clock.monoOffsetMs;

	const net = { counts: {}, tokens: {}, log: [], rules: [] };
	globalThis.__net = net;
	const realFetch = globalThis.fetch.bind(globalThis);
	const textOf = (body) => {
		if (typeof body === "string") return body;
		if (body instanceof Uint8Array || body instanceof ArrayBuffer) {
			return new TextDecoder().decode(body);
		}
		return "";
	};
	globalThis.fetch = async (input, init = {}) => {
		const path = new URL(typeof input === "string" ? input : input.url, location.href).pathname;
		let grant = "";
		if (path === "/api/token") {
			try { grant = JSON.parse(textOf(init.body)).grant || ""; } catch {}
			net.tokens[grant] = (net.tokens[grant] || 0) + 1;
		}
		net.counts[path] = (net.counts[path] || 0) + 1;
		net.log.push({ path, grant, at: RealDate.now() });

		const rule = net.rules.find((r) => r.path === path && (!r.grant || r.grant === grant));
		if (rule) {
			rule.hits = (rule.hits || 0) + 1;
			if (rule.delayMs) await new Promise((resolve) => setTimeout(resolve, rule.delayMs));
			if (rule.network) throw new TypeError("Failed to fetch (injected by the test)");
			if (rule.status) {
				const headers = { "Content-Type": "application/json" };
				if (rule.retryAfter) headers["Retry-After"] = String(rule.retryAfter);
				return new Response(JSON.stringify({ error: { code: rule.code,
					message: "injected by the test" } }), { status: rule.status, headers });
			}
		}
		return realFetch(input, init);
	};

	globalThis.__events = [];
	globalThis.__hookEvents = (client) => {
		for (const type of ["refresh", "refresherror", "expiring", "expired", "sessionend",
			"streamend"]) {
			client.addEventListener(type, (event) => {
				const d = event.detail || {};
				globalThis.__events.push({ type, grant: d.grant || "", reason: String(d.reason || ""),
					code: d.error ? String(d.error.code) : (d.code !== undefined ? String(d.code) : ""),
					kind: d.kind || "", at: RealDate.now() });
			});
		}
	};

	// speak runs one client.tts.bytes call and never throws: it resolves with the audio
	// (base64 raw pcm_s16le at 16 kHz) or the error's code and status.
	globalThis.__speak = async (text, client) => {
		try {
			const bytes = await (client || globalThis.voxgateDemo.client).tts.bytes({
				model_id: "sonic-3", transcript: text,
				voice: { mode: "id", id: "6ccbfb76-1fc6-48f7-b71d-91ac6298247b" },
				output_format: { container: "raw", encoding: "pcm_s16le", sample_rate: 16000 },
				language: "en",
			});
			let s = "";
			for (let i = 0; i < bytes.length; i += 0x8000) {
				s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
			}
			return { ok: true, audio: btoa(s), code: "", status: 0 };
		} catch (err) {
			return { ok: false, audio: "", code: String(err.code), status: Number(err.status) || 0 };
		}
	};
})()`

// clockStart is how the page's clocks start: offsets from the real clocks, in ms.
type clockStart struct {
	WallOffsetMs int64
	MonoOffsetMs int64
}

// speech is the result of the page's __speak.
type speech struct {
	OK     bool   `json:"ok"`
	Audio  string `json:"audio"`
	Code   string `json:"code"`
	Status int    `json:"status"`
}

// clientEvent is one entry of the page's __events.
type clientEvent struct {
	Type   string `json:"type"`
	Grant  string `json:"grant"`
	Reason string `json:"reason"`
	Code   string `json:"code"`
	Kind   string `json:"kind"`
}

// netRule is one entry of __net.rules: what to do with matching fetches.
type netRule struct {
	Path       string `json:"path"`
	Grant      string `json:"grant,omitempty"`
	DelayMs    int    `json:"delayMs,omitempty"`
	Network    bool   `json:"network,omitempty"`
	Status     int    `json:"status,omitempty"`
	Code       string `json:"code,omitempty"`
	RetryAfter int    `json:"retryAfter,omitempty"`
}

// openSeamedPage starts a browser, installs the seams with the given clocks and opens
// path on s. It waits until the client is loaded (signed in or out).
func openSeamedPage(t *testing.T, s *server, path string, clock clockStart,
	extra ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	p := &page{t: t, b: newBrowser(t, extra...), s: s}
	p.installSeams(clock)
	p.navigate(path)
	return p
}

// openTabLike opens another tab of p's browser (same profile, so the same cookies, Web
// Locks and BroadcastChannels) on path, with the same starting clocks.
func (p *page) openTabLike(path string, clock clockStart) *page {
	p.t.Helper()
	tctx, cancel := chromedp.NewContext(p.b.ctx)
	p.t.Cleanup(cancel)
	b := &browser{t: p.t, ctx: tctx}
	if err := chromedp.Do(tctx); err != nil {
		p.t.Fatalf("browser: open a tab: %v", err)
	}
	go b.collectConsole(chromedp.Console(tctx))
	p.t.Cleanup(func() {
		if p.t.Failed() {
			b.dumpConsole()
		}
	})
	q := &page{t: p.t, b: b, s: p.s}
	q.installSeams(clock)
	q.navigate(path)
	return q
}

// closeTab closes the tab as a person would (its Web Locks are released by the browser).
func (p *page) closeTab() {
	p.t.Helper()
	if err := chromedp.Cancel(p.b.ctx); err != nil {
		p.t.Fatalf("browser: close the tab: %v", err)
	}
}

func (p *page) installSeams(clock clockStart) {
	p.t.Helper()
	source := fmt.Sprintf(seamsJS, clock.WallOffsetMs, clock.MonoOffsetMs)
	add := func(ctx context.Context, t *chromedp.Target) (cdp.Empty, error) {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument,
			cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: source})
		return cdp.Empty{}, err
	}
	if _, err := chromedp.Run(p.b.ctx, add); err != nil {
		p.t.Fatalf("browser: install the clock and network seams: %v", err)
	}
}

func (p *page) navigate(path string) {
	p.t.Helper()
	p.b.do("open the page", chromedp.Navigate(p.s.URL+path))
	p.b.waitFor("load the client", `globalThis.voxgateDemo && voxgateDemo.client !== null &&
		(document.body.dataset.app === "signed-out" || document.body.dataset.app === "signed-in")`,
		stepTimeout)
	eval[bool](p.b, "hook the client events", `(__hookEvents(voxgateDemo.client), true)`)
}

// evalErr is eval for other goroutines than the test's: it returns the error instead of
// failing the test.
func evalErr[T any](b *browser, expr string) (T, error) {
	return chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// shiftClock moves the page's wall and monotonic clocks forward by the given amounts.
func (p *page) shiftClock(wall, mono time.Duration) {
	p.t.Helper()
	eval[bool](p.b, "shift the clock", fmt.Sprintf(
		`(__clock.wallOffsetMs += %d, __clock.monoOffsetMs += %d, true)`,
		wall.Milliseconds(), mono.Milliseconds()))
}

// say runs client.tts.bytes in the page and returns its result; text must be ASCII.
func (p *page) say(text string) speech {
	p.t.Helper()
	return eval[speech](p.b, "speak "+text, fmt.Sprintf(`__speak(%q)`, text))
}

// sayOK is say that must succeed and decode back to text.
func (p *page) sayOK(text string) {
	p.t.Helper()
	r := p.say(text)
	if !r.OK {
		p.t.Fatalf("speak %q: failed with %s (status %d)", text, r.Code, r.Status)
	}
	format := outputFormat{Container: "raw", Encoding: "pcm_s16le", SampleRate: 16000}
	if got := decodeSpeech(p.t, decodeBase64(p.t, r.Audio), format); got != text {
		p.t.Fatalf("speak %q: the audio decodes to %q", text, got)
	}
}

// tokenRequests is how many POST /api/token requests the page sent for grant ("" = all).
func (p *page) tokenRequests(grant string) int {
	p.t.Helper()
	if grant == "" {
		return eval[int](p.b, "count token requests", `__net.counts["/api/token"] || 0`)
	}
	return eval[int](p.b, "count token requests", fmt.Sprintf(`__net.tokens[%q] || 0`, grant))
}

// requests is how many fetches the page sent to path.
func (p *page) requests(path string) int {
	p.t.Helper()
	return eval[int](p.b, "count requests", fmt.Sprintf(`__net.counts[%q] || 0`, path))
}

// setRules replaces the page's fetch rules.
func (p *page) setRules(rules ...netRule) {
	p.t.Helper()
	if rules == nil {
		rules = []netRule{}
	}
	raw, err := json.Marshal(rules)
	if err != nil {
		p.t.Fatal(err)
	}
	eval[bool](p.b, "set fetch rules", fmt.Sprintf(`(__net.rules = %s, true)`, raw))
}

// events returns the client events recorded so far, of the given types (all when none).
func (p *page) events(types ...string) []clientEvent {
	p.t.Helper()
	all := eval[[]clientEvent](p.b, "read events", `__events`)
	if len(types) == 0 {
		return all
	}
	var out []clientEvent
	for _, e := range all {
		for _, want := range types {
			if e.Type == want {
				out = append(out, e)
			}
		}
	}
	return out
}

// quickSignIn fills the sign-in form by script and submits it: the page's own sign-in
// path, without typing key by key (which costs seconds per test).
func (p *page) quickSignIn() {
	p.t.Helper()
	eval[bool](p.b, "sign in", fmt.Sprintf(`(() => {
		document.getElementById("username").value = %q;
		document.getElementById("password").value = %q;
		document.getElementById("signin-form").requestSubmit();
		return true;
	})()`, p.s.User, p.s.Password))
	p.b.waitFor("sign in", `document.body.dataset.app === "signed-in"`, stepTimeout)
}

// signOutElsewhere ends the session on the server behind the client's back, as another
// tab, another device or the session's own expiry would: the client learns it only from
// the server's answers.
func (p *page) signOutElsewhere() {
	p.t.Helper()
	status := eval[int](p.b, "sign out behind the client's back", `fetch("/api/logout", {
		method: "POST", headers: {"X-CSRF": "1"}, credentials: "same-origin"}).then((r) => r.status)`)
	if status != 204 {
		p.t.Fatalf("POST /api/logout answered %d, want 204", status)
	}
}

// setLifecycle freezes ("frozen") or resumes ("active") the tab: a frozen tab runs no
// JavaScript and no timers, which is what browsers do to hidden tabs, only harder.
func (p *page) setLifecycle(state cdppage.SetWebLifecycleStateState) {
	p.t.Helper()
	set := func(ctx context.Context, t *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, t, cdppage.SetWebLifecycleState,
			cdppage.SetWebLifecycleStateParams{State: state})
	}
	if _, err := chromedp.Run(p.b.ctx, set); err != nil {
		p.t.Fatalf("browser: set the lifecycle state %s: %v", state, err)
	}
}

// cookie returns the value of the named cookie for the server's origin ("" when absent).
func (p *page) cookie(name string) string {
	p.t.Helper()
	get := func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{p.s.URL}})
		return r.Cookies, err
	}
	cookies, err := chromedp.Run(p.b.ctx, get)
	if err != nil {
		p.t.Fatalf("browser: read cookies: %v", err)
	}
	for _, c := range cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// replaceCookie overwrites an httpOnly cookie of the origin with value through DevTools,
// keeping the attributes the server sets.
func (p *page) replaceCookie(name, value string) {
	p.t.Helper()
	yes := true
	set := func(ctx context.Context, t *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, t, network.SetCookie, network.SetCookieParams{
			Name: name, Value: value, URL: p.s.URL, Path: "/", Secure: &yes, HTTPOnly: &yes,
			SameSite: network.CookieSameSiteStrict,
			Expires:  cdp.TimeSinceEpoch(time.Now().Add(time.Hour).Unix()),
		})
	}
	if _, err := chromedp.Run(p.b.ctx, set); err != nil {
		p.t.Fatalf("browser: replace cookie %s: %v", name, err)
	}
}

// deleteCookie removes a cookie of the origin through DevTools.
func (p *page) deleteCookie(name string) {
	p.t.Helper()
	del := func(ctx context.Context, t *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, t, network.DeleteCookies,
			network.DeleteCookiesParams{Name: name, URL: p.s.URL})
	}
	if _, err := chromedp.Run(p.b.ctx, del); err != nil {
		p.t.Fatalf("browser: delete cookie %s: %v", name, err)
	}
}

// startServerAt starts bin/server on a fixed address with a fixed demo password, so that a
// second process can take over the same origin (a restart).
func startServerAt(t *testing.T, addr, password string, env ...string) *server {
	t.Helper()
	s := startServer(t, append([]string{"ADDR=" + addr, "DEMO_PASSWORD=" + password}, env...)...)
	s.Password = password
	return s
}

// restart stops s and starts a new process on the same address with the same password
// and env; the page keeps its origin and cookies. The old server's log stays readable.
func restart(t *testing.T, s *server, env ...string) *server {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("server: parse %s: %v", s.URL, err)
	}
	s.Stop()
	return startServerAt(t, u.Host, s.Password, env...)
}

// mints counts the token_minted lines for grant after mark.
func mints(s *server, mark int, grant string) int {
	return countLines(s.Since(mark), isMint(grant))
}

// quietFor waits d and fails when the page sent more than allowed token requests meanwhile:
// a client in a loop would send many.
func (p *page) quietFor(d time.Duration, allowed int, why string) {
	p.t.Helper()
	before := p.tokenRequests("")
	time.Sleep(d)
	if n := p.tokenRequests("") - before; n > allowed {
		p.t.Errorf("%s: %d token requests in %s, want at most %d", why, n, d, allowed)
	}
}

func eventTypes(events []clientEvent) string {
	parts := make([]string, len(events))
	for i, e := range events {
		parts[i] = e.Type + ":" + e.Grant + ":" + e.Reason + ":" + e.Code + ":" + e.Kind
	}
	return strings.Join(parts, " ")
}
