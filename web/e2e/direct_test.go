//go:build !js

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/voxgate/voxgate/server/audio"
)

// tokenCapture records, through DevTools, the direct-mode tokens the server handed the
// page: what an observer with the network panel sees, so the test can look for them
// everywhere page JavaScript could.
type tokenCapture struct {
	mu     sync.Mutex
	ids    []network.RequestID
	tokens []string
}

// captureDirectTokens starts recording answers of POST /api/token/direct.
func captureDirectTokens(b *browser) *tokenCapture {
	b.t.Helper()
	c := &tokenCapture{}
	err := chromedp.Listen(b.ctx, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok &&
			strings.HasSuffix(e.Response.URL, "/api/token/direct") {
			c.mu.Lock()
			c.ids = append(c.ids, e.RequestID)
			c.mu.Unlock()
		}
	})
	if err != nil {
		b.t.Fatalf("browser: listen for network events: %v", err)
	}
	b.do("enable network events", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	}))
	return c
}

// read fetches the bodies of the recorded answers and returns their tokens.
func (c *tokenCapture) read(b *browser) []string {
	b.t.Helper()
	c.mu.Lock()
	ids := append([]network.RequestID(nil), c.ids...)
	c.mu.Unlock()

	var tokens []string
	for _, id := range ids {
		var body []byte
		b.do("read a direct token answer", chromedp.Func(func(ctx context.Context,
			t *chromedp.Target) error {
			r, err := cdp.Call(ctx, t, network.GetResponseBody,
				network.GetResponseBodyParams{RequestID: id})
			body = r.Body
			return err
		}))
		var answer struct {
			Token  string   `json:"token"`
			Grants []string `json:"grants"`
		}
		if err := json.Unmarshal(body, &answer); err != nil || answer.Token == "" {
			b.t.Fatalf("direct token answer is not {token, ...}: %v", err)
		}
		tokens = append(tokens, answer.Token)
	}
	return tokens
}

// TestDirectModeKeepsTheTokenInWasmMemory: with DIRECT_GRANTS=tts,stt the page speaks and
// transcribes through Cartesia (the emulator) directly, the server proxies none of those
// calls, and the token the server handed over appears nowhere page JavaScript or an
// observer of the page could read it: not in the DOM, Web Storage, document.cookie, the
// console, the events, the token states or the server log.
func TestDirectModeKeepsTheTokenInWasmMemory(t *testing.T) {
	s := startServer(t, "DIRECT_GRANTS=tts,stt", "DIRECT_TOKEN_TTL=30")
	p := openPage(t, s, "/")
	capture := captureDirectTokens(p.b)
	p.signIn()

	raw, format := p.speakOK("direct hello", "wav:pcm_s16le:24000")
	if got := decodeSpeech(t, raw, format); got != "direct hello" {
		t.Fatalf("decoded %q, want the sentence", got)
	}
	p.b.waitFor("token row shows direct", `document.querySelector(
		'.token-row[data-grant="tts"]').dataset.direct === "true"`, stepTimeout)

	tokens := capture.read(p.b)
	if len(tokens) == 0 {
		t.Fatal("no POST /api/token/direct answer was seen")
	}

	// The page: DOM, storage, script-readable cookies, states, recorded events.
	exposed := eval[string](p.b, "collect what page JavaScript can read", `(async () => {
		const parts = [document.documentElement.outerHTML, document.cookie,
			JSON.stringify(Object.entries(localStorage)),
			JSON.stringify(Object.entries(sessionStorage)),
			JSON.stringify(voxgateDemo.client.tokens.states()),
			JSON.stringify(voxgateDemo.lastError ?? null)];
		const dbs = indexedDB.databases ? await indexedDB.databases() : [];
		parts.push(JSON.stringify(dbs));
		return parts.join("\n");
	})()`)
	for _, tok := range tokens {
		if strings.Contains(exposed, tok) {
			t.Fatal("the direct token is readable by page JavaScript")
		}
	}
	p.b.mu.Lock()
	console := strings.Join(p.b.console, "\n")
	p.b.mu.Unlock()
	for _, tok := range tokens {
		if strings.Contains(console, tok) {
			t.Fatal("the direct token appeared in the console")
		}
	}

	// The server minted directly and proxied nothing for tts.
	if n := countLines(s.Lines(), func(l logLine) bool {
		return l.Msg() == "token_issued_direct" && l.Str("grant") == "tts"
	}); n == 0 {
		t.Fatal("the server logged no token_issued_direct for tts")
	}
	if n := countLines(s.Lines(), isProxied("tts")); n != 0 {
		t.Fatalf("%d tts calls went through the proxy in direct mode", n)
	}
	if problems := p.b.consoleProblems(); len(problems) > 0 {
		t.Fatalf("page problems (CSP must allow the upstream): %v", problems)
	}

	cookies := p.b.cookieValues(s.URL)
	s.Stop()
	assertNoSecrets(t, s, cookies)
	for _, l := range s.Lines() {
		for _, tok := range tokens {
			if strings.Contains(l.Raw, tok) {
				t.Fatalf("server log line %q carries the direct token", l.Msg())
			}
		}
	}
}

// TestDirectModeOffByDefaultUsesTheProxy: without DIRECT_GRANTS the page never asks for a
// direct token and every call is proxied.
func TestDirectModeOffByDefaultUsesTheProxy(t *testing.T) {
	s := startServer(t)
	p := openPage(t, s, "/")
	p.signIn()
	p.speakOK("through the proxy", "wav:pcm_s16le:24000")

	deadline := time.Now().Add(stepTimeout)
	for countLines(s.Lines(), isProxied("tts")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if countLines(s.Lines(), isProxied("tts")) == 0 {
		t.Fatal("the call was not proxied")
	}
	if n := countLines(s.Lines(), func(l logLine) bool {
		return l.Msg() == "token_issued_direct"
	}); n != 0 {
		t.Fatalf("%d direct tokens issued with direct mode off", n)
	}
	if d := eval[bool](p.b, "read direct flag", `voxgateDemo.client.tokens.state("tts").direct`); d {
		t.Fatal("the tts token reports direct with direct mode off")
	}
}

// TestDirectModeStreamsAndUploads: the TTS WebSocket (Type & hear), the STT WebSocket
// (Dictate, through the fake microphone) and the batch upload (File) all work in direct
// mode, straight to the upstream, with nothing proxied.
func TestDirectModeStreamsAndUploads(t *testing.T) {
	t.Parallel()
	const said = "Direct from the microphone."
	s := startServer(t, "DIRECT_GRANTS=tts,stt")
	p := openTab(t, s, "live", fakeMicrophone(t, said)...)

	const typed = "Typed, and sent directly."
	p.b.do("type", chromedp.SendKeys(chromedp.ID("live-text"), typed+kb.Enter))
	p.waitRecord("live", 1, "r.complete", stepTimeout)
	raw := chunksOf(p, "voxgateDemo.live.chunks")
	if texts := decodeFrames(t, raw, audio.F32LE, 44100); strings.Join(texts, "") != typed {
		t.Errorf("the direct TTS socket's audio decodes to %q, want %q", texts, typed)
	}

	p.b.do("open dictate", chromedp.Click(chromedp.ID("tab-dictate")))
	if finals := p.dictate(); len(finals) == 0 || finals[0] != said {
		t.Errorf("direct STT finals %q, want %q first", finals, said)
	}

	path := speechFile(t, typed)
	p.b.do("open transcribe", chromedp.Click(chromedp.ID("tab-transcribe")))
	p.b.do("transcribe a file directly",
		chromedp.SetUploadFiles(chromedp.ID("transcribe-file"), []string{path}),
		chromedp.Click(chromedp.ID("transcribe-submit")))
	p.waitRecord("transcription", 1, "r.result !== null", stepTimeout)
	if got := eval[string](p.b, "read the transcript",
		"voxgateDemo.transcription.result.text"); got != typed {
		t.Errorf("direct batch transcript %q, want %q", got, typed)
	}

	for _, grant := range []string{"tts", "stt"} {
		if n := countLines(s.Lines(), func(l logLine) bool {
			return l.Msg() == "proxy" && l.Str("grant") == grant
		}); n != 0 {
			t.Errorf("%d %s calls went through the proxy in direct mode", n, grant)
		}
	}
	p.finish(s, "direct")
}
