//go:build !js

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// outputFormat is the page's voxgateDemo.lastAudio.format: Cartesia's output_format.
type outputFormat struct {
	Container  string `json:"container"`
	Encoding   string `json:"encoding"`
	SampleRate int    `json:"sample_rate"`
	BitRate    int    `json:"bit_rate"`
}

// page is the demo page open in a browser against one server.
type page struct {
	t *testing.T
	b *browser
	s *server
}

// openPage loads the demo page (path may carry a query) and waits for the sign-in form;
// extra adds browser options.
func openPage(t *testing.T, s *server, path string, extra ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	p := &page{t: t, b: newBrowser(t, extra...), s: s}
	p.b.do("open the page", chromedp.Navigate(s.URL+path))
	p.b.waitFor("load the client", `document.body.dataset.app === "signed-out"`, stepTimeout)
	return p
}

// signIn types the demo credentials into the form and submits it.
func (p *page) signIn() {
	p.t.Helper()
	p.submitSignIn(p.s.User, p.s.Password)
	p.b.waitFor("sign in", `document.body.dataset.app === "signed-in"`, stepTimeout)
}

// submitSignIn types credentials into the emptied form and presses Sign in.
func (p *page) submitSignIn(user, password string) {
	p.t.Helper()
	p.clear("username")
	p.clear("password")
	p.b.do("submit the sign-in form",
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("signin-submit")),
	)
}

// clear empties a text field before typing into it.
//
// Limitation: chromedp v0.23.1's SetValue cannot set "": the empty argument reaches the
// page as undefined, and the field then reads "undefined". The field is cleared with a
// script instead; the text is still typed key by key.
func (p *page) clear(id string) {
	p.t.Helper()
	eval[bool](p.b, "clear "+id, fmt.Sprintf(`(() => {
		const field = document.getElementById(%q);
		field.value = "";
		return field.value === "";
	})()`, id))
}

// speak types text, picks the output format (a value of the #format select), presses
// Speak and waits until the panel reports "played" or "error" for this run. It returns
// the final state.
func (p *page) speak(text, format string) string {
	p.t.Helper()
	run := eval[int](p.b, "read run", `Number(document.getElementById("speak-panel").dataset.run)`)
	p.clear("transcript")
	p.b.do("speak",
		chromedp.SetValue(chromedp.ID("format"), format),
		chromedp.SendKeys(chromedp.ID("transcript"), text),
		chromedp.Click(chromedp.ID("speak")),
	)
	p.b.waitFor("speak", fmt.Sprintf(`(() => {
		const panel = document.getElementById("speak-panel");
		return Number(panel.dataset.run) === %d &&
			(panel.dataset.state === "played" || panel.dataset.state === "error");
	})()`, run+1), stepTimeout)
	return eval[string](p.b, "read state", `document.getElementById("speak-panel").dataset.state`)
}

// speakOK is speak that must succeed; it returns the audio the page received.
func (p *page) speakOK(text, format string) ([]byte, outputFormat) {
	p.t.Helper()
	if state := p.speak(text, format); state != "played" {
		p.t.Fatalf("speak %q as %s: state %q, error %s", text, format, state, p.lastError())
	}
	raw := bytesFromJS(p.b, "read audio", "voxgateDemo.lastAudio.bytes")
	f := eval[outputFormat](p.b, "read format", "voxgateDemo.lastAudio.format")
	return raw, f
}

func (p *page) lastError() string {
	return eval[string](p.b, "read error", `JSON.stringify(voxgateDemo.lastError && {
		code: voxgateDemo.lastError.code, status: voxgateDemo.lastError.status,
		message: voxgateDemo.lastError.message, upstream: voxgateDemo.lastError.upstream})`)
}

// tokenRow reads the page's token row for grant.
func (p *page) tokenRow(grant string) (status string, remainingMs int) {
	p.t.Helper()
	row := eval[struct {
		Status    string `json:"status"`
		Remaining int    `json:"remaining"`
	}](p.b, "read token row", fmt.Sprintf(`(() => {
		const row = document.querySelector('.token-row[data-grant=%q]');
		return {status: row.dataset.status, remaining: Number(row.dataset.remainingMs)};
	})()`, grant))
	return row.Status, row.Remaining
}

// decodeSpeech decodes the emulator's tone code from audio in the given format.
func decodeSpeech(t *testing.T, raw []byte, f outputFormat) string {
	t.Helper()
	var samples []float32
	switch f.Container {
	case "wav":
		w, err := audio.ParseWAV(raw)
		if err != nil {
			t.Fatalf("parse WAV (%d bytes): %v", len(raw), err)
		}
		if string(w.Encoding) != f.Encoding || w.SampleRate != f.SampleRate {
			t.Fatalf("WAV header says %s at %d Hz, requested %s at %d Hz",
				w.Encoding, w.SampleRate, f.Encoding, f.SampleRate)
		}
		samples = w.Samples
	case "raw":
		var err error
		samples, err = audio.Decode(audio.Encoding(f.Encoding), raw)
		if err != nil {
			t.Fatalf("decode raw %s (%d bytes): %v", f.Encoding, len(raw), err)
		}
	default:
		t.Fatalf("cannot decode container %q", f.Container)
	}

	text, err := tonecode.Decode(samples, f.SampleRate)
	if err != nil {
		t.Fatalf("tone-decode %d samples at %d Hz: %v", len(samples), f.SampleRate, err)
	}
	return text
}

func TestSpeakRoundTripsThroughThePage(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openPage(t, s, "/")

	// The upstream is the emulator, and the page says so.
	p.b.do("emulator banner", chromedp.WaitVisible(chromedp.ID("emulator-banner")))
	banner := eval[string](p.b, "banner text",
		`document.getElementById("emulator-banner").textContent`)
	if !strings.Contains(banner, "Offline emulator") || !strings.Contains(banner, "tone code") {
		t.Errorf("emulator banner reads %q", strings.TrimSpace(banner))
	}

	p.signIn()
	cookies := p.b.cookieValues(s.URL)

	cases := []struct {
		format string
		text   string
	}{
		{"wav:pcm_s16le:24000", "Hello from a real browser."},
		{"raw:pcm_s16le:16000", "Raw PCM at 16 kHz, decoded in Go."},
		{"wav:pcm_mulaw:8000", "Mu-law at 8 kHz: telephone quality."},
		{"wav:pcm_alaw:8000", "A-law works too, 8000 samples a second."},
		{"wav:pcm_f32le:44100", "Float WAV at 44.1 kHz."},
		{"raw:pcm_f32le:48000", "Raw floats at 48 kHz, the last one."},
	}
	for _, c := range cases {
		raw, f := p.speakOK(c.text, c.format)
		want := strings.SplitN(c.format, ":", 3)
		if f.Container != want[0] || f.Encoding != want[1] || fmt.Sprint(f.SampleRate) != want[2] {
			t.Errorf("page requested %+v for the %s option", f, c.format)
		}
		if got := decodeSpeech(t, raw, f); got != c.text {
			t.Errorf("%s: the audio decodes to %q, want %q", c.format, got, c.text)
		}
		cookies = append(cookies, p.b.cookieValues(s.URL)...)
	}

	// The tts token row counts down from a live token.
	if status, remaining := p.tokenRow("tts"); status != "valid" || remaining <= 0 {
		t.Errorf("tts token row: status %q, remaining %d ms; want valid and positive",
			status, remaining)
	}

	// Tokens live in httpOnly cookies: page JavaScript cannot read any of them.
	if jar := eval[string](p.b, "document.cookie", "document.cookie"); strings.Contains(jar, "vg_") {
		t.Errorf("page JavaScript can read voxgate cookies: %q", jar)
	}

	t.Logf("screenshot: %s", p.b.screenshot("speak"))
	if problems := p.b.consoleProblems(); len(problems) > 0 {
		t.Errorf("the page logged problems:\n  %s", strings.Join(problems, "\n  "))
	}

	s.Stop()
	assertNoSecrets(t, s, cookies)
}

func TestEmulatorRefusesMP3WithATypedError(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openPage(t, s, "/")
	p.signIn()

	if state := p.speak("This cannot be an MP3.", "mp3:128000:44100"); state != "error" {
		t.Fatalf("speak as MP3: state %q, want error", state)
	}
	got := eval[struct {
		Code     string `json:"code"`
		Status   int    `json:"status"`
		Upstream struct {
			ErrorCode string `json:"error_code"`
		} `json:"upstream"`
		Shown string `json:"shown"`
	}](p.b, "read error", `({
		code: voxgateDemo.lastError.code,
		status: voxgateDemo.lastError.status,
		upstream: voxgateDemo.lastError.upstream || {},
		shown: document.getElementById("speak-error").hidden ? "" :
			document.getElementById("speak-error").dataset.code,
	})`)
	if got.Code != "upstream_error" || got.Status != 400 ||
		got.Upstream.ErrorCode != "unsupported_by_emulator" {
		t.Errorf("MP3 error = %+v, want upstream_error 400 with unsupported_by_emulator", got)
	}
	if got.Shown != got.Code {
		t.Errorf("the page shows error code %q, want %q", got.Shown, got.Code)
	}

	s.Stop()
	assertNoSecrets(t, s, p.b.cookieValues(s.URL))
}

func TestSignInErrorsReloadAndSignOut(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openPage(t, s, "/")

	// A wrong password is refused with the server's code, shown next to the form.
	wrong := "wrong-" + randomHex(t, 12)
	p.submitSignIn(s.User, wrong)
	p.b.waitFor("sign-in error", `!document.getElementById("signin-error").hidden`, stepTimeout)
	if code := eval[string](p.b, "error code",
		`document.getElementById("signin-error").dataset.code`); code != "invalid_credentials" {
		t.Errorf("wrong password shows code %q, want invalid_credentials", code)
	}
	if app := eval[string](p.b, "app state", "document.body.dataset.app"); app != "signed-out" {
		t.Errorf("after a wrong password the page is %q, want signed-out", app)
	}

	p.signIn()

	// "Refresh now" mints a tts token on the server and logs a manual refresh in the page.
	mark := s.Mark()
	p.b.do("refresh now", chromedp.Click(chromedp.CSS(`.token-row[data-grant="tts"] button`)))
	p.b.waitFor("manual refresh in the log",
		`document.querySelector(
			'#refresh-log [data-type="refresh"][data-grant="tts"][data-reason="manual"]') !== null`,
		stepTimeout)
	s.waitCount(t, mark, 1, stepTimeout, isMint("tts"))
	p.b.waitFor("tts row shows a live token",
		`document.querySelector('.token-row[data-grant="tts"]').dataset.status === "valid"`,
		stepTimeout)
	cookies := p.b.cookieValues(s.URL)

	// The session cookie outlives a reload: the page asks the server and skips the form.
	p.b.do("reload", chromedp.Reload())
	p.b.waitFor("restore the session", `document.body.dataset.app === "signed-in"`, stepTimeout)
	who := eval[string](p.b, "account", `document.getElementById("account-status").textContent`)
	if !strings.Contains(who, s.User) {
		t.Errorf("after reload the account reads %q, want the user %q", who, s.User)
	}

	// Signing out ends the session on the server too: a reload shows the form again.
	p.b.do("sign out", chromedp.Click(chromedp.ID("signout")))
	p.b.waitFor("sign out", `document.body.dataset.app === "signed-out"`, stepTimeout)
	p.b.do("reload", chromedp.Reload())
	p.b.waitFor("stay signed out", `document.body.dataset.app === "signed-out"`, stepTimeout)

	s.Stop()
	assertNoSecrets(t, s, append(cookies, wrong))
}

// tokenTTL is the short token lifetime of the expiry tests: the server's minimum is 2 s,
// and 3 s leaves the client's margin (a fifth of the lifetime) well above loopback latency.
const tokenTTL = 3 * time.Second

// onDemand opens the page with proactive refresh off, so that a token really expires
// while the page is idle and the next call has to refresh it.
const onDemand = "/?refresh=on-demand"

// waitExpired waits until the client reports the grant's token as expired.
func (p *page) waitExpired(grant string) {
	p.t.Helper()
	p.b.waitFor("token expiry", fmt.Sprintf(`(() => {
		const s = voxgateDemo.client.tokens.state(%q);
		return s.refreshes > 0 && !s.valid && !s.refreshing && s.remainingMs <= 0;
	})()`, grant), tokenTTL+stepTimeout)
}

func TestExpiredTokenIsRefreshedBeforeTheNextCall(t *testing.T) {
	t.Parallel()
	s := startServer(t, fmt.Sprintf("TOKEN_TTL=%d", int(tokenTTL.Seconds())))
	p := openPage(t, s, onDemand)
	p.signIn()

	raw, f := p.speakOK("Before the token expires.", "wav:pcm_s16le:24000")
	if got := decodeSpeech(t, raw, f); got != "Before the token expires." {
		t.Fatalf("first call decodes to %q", got)
	}
	cookies := p.b.cookieValues(s.URL)

	p.waitExpired("tts")
	p.b.waitFor("expired event in the page log",
		`document.querySelector('#refresh-log [data-type="expired"][data-grant="tts"]') !== null`,
		stepTimeout)
	refreshesBefore := eval[int](p.b, "count refresh entries",
		`document.querySelectorAll('#refresh-log [data-type="refresh"][data-grant="tts"]').length`)
	mark := s.Mark()

	raw, f = p.speakOK("After the token expired.", "wav:pcm_s16le:24000")
	if got := decodeSpeech(t, raw, f); got != "After the token expired." {
		t.Fatalf("second call decodes to %q", got)
	}
	cookies = append(cookies, p.b.cookieValues(s.URL)...)

	// The server minted a new tts token, and did so before it forwarded the call.
	lines := s.waitCount(t, mark, 1, stepTimeout, isProxied("tts"))
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
		t.Errorf("after expiry: token_minted at line %d, proxied call at line %d; "+
			"want a mint before the call", mint, call)
	}
	// Refreshed before the call, not after a rejection: the expired token was never sent.
	if n := countLines(lines, isRejected("tts")); n != 0 {
		t.Errorf("%d tts calls were rejected after expiry; the client should refresh first", n)
	}

	// The page's refresh log shows the refresh, newest first, triggered by the expiry.
	entry := eval[struct {
		Count  int    `json:"count"`
		Reason string `json:"reason"`
	}](p.b, "read refresh log", `(() => {
		const items = document.querySelectorAll('#refresh-log [data-type="refresh"][data-grant="tts"]');
		return {count: items.length, reason: items.length ? items[0].dataset.reason : ""};
	})()`)
	if entry.Count != refreshesBefore+1 || entry.Reason != "expiring" {
		t.Errorf("page refresh log: %d tts refreshes (newest: %q), want %d with reason expiring",
			entry.Count, entry.Reason, refreshesBefore+1)
	}

	s.Stop()
	assertNoSecrets(t, s, cookies)
}

func TestConcurrentCallsShareOneRefresh(t *testing.T) {
	t.Parallel()
	s := startServer(t, fmt.Sprintf("TOKEN_TTL=%d", int(tokenTTL.Seconds())))
	p := openPage(t, s, onDemand)
	p.signIn()

	if _, f := p.speakOK("Mint the first token.", "raw:pcm_s16le:16000"); f.Container != "raw" {
		t.Fatalf("first call returned format %+v", f)
	}
	cookies := p.b.cookieValues(s.URL)
	p.waitExpired("tts")
	mark := s.Mark()

	// Five calls at once, straight through the client API, on an expired token.
	const calls = 5
	results := eval[[]string](p.b, "five concurrent calls", fmt.Sprintf(`(async () => {
		const format = {container: "raw", encoding: "pcm_s16le", sample_rate: 16000};
		const call = (i) => voxgateDemo.client.tts.bytes({
			model_id: "sonic-3",
			transcript: "Concurrent call " + i,
			voice: {mode: "id", id: "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},
			output_format: format,
			language: "en",
		});
		const all = await Promise.all(Array.from({length: %d}, (_, i) => call(i + 1)));
		return all.map((bytes) => {
			let text = "";
			for (let i = 0; i < bytes.length; i += 0x8000) {
				text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
			}
			return btoa(text);
		});
	})()`, calls))
	if len(results) != calls {
		t.Fatalf("got %d results, want %d", len(results), calls)
	}
	format := outputFormat{Container: "raw", Encoding: "pcm_s16le", SampleRate: 16000}
	for i, encoded := range results {
		raw := decodeBase64(t, encoded)
		want := fmt.Sprintf("Concurrent call %d", i+1)
		if got := decodeSpeech(t, raw, format); got != want {
			t.Errorf("call %d decodes to %q, want %q", i+1, got, want)
		}
	}
	cookies = append(cookies, p.b.cookieValues(s.URL)...)

	// Every call was forwarded, and exactly one token was minted for all of them.
	lines := s.waitCount(t, mark, calls, stepTimeout, isProxied("tts"))
	if n := countLines(lines, isMint("tts")); n != 1 {
		t.Errorf("%d tts tokens minted for %d concurrent calls on an expired token, want 1",
			n, calls)
	}
	if n := countLines(lines, isRejected("tts")); n != 0 {
		t.Errorf("%d of the concurrent calls were rejected first; want none", n)
	}

	s.Stop()
	assertNoSecrets(t, s, cookies)
}
