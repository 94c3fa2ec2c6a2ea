//go:build !js

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds one test's whole browser session, so a hung page fails the test
// instead of the package's global timeout.
const browserTimeout = 60 * time.Second

// stepTimeout bounds waits for one page state (sign-in, one Speak).
const stepTimeout = 15 * time.Second

// browser is one headless Chromium with a fresh profile and one tab.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []string
}

// newBrowser starts Chromium (skipping or failing like the server when it is missing) and
// closes it when the test ends. extra adds command-line options, such as a fake microphone.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := chromiumPath(t)

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	options := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // root in containers; the page is our own, on loopback
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	}, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, options...)
	tctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: tctx}
	t.Cleanup(func() {
		if t.Failed() {
			b.dumpConsole()
		}
		cancelTab()
		cancelAlloc()
		cancel()
	})

	// The first Run starts the browser and the tab. Console subscribes when it returns, so
	// it is called here, before any navigation, and only read in the goroutine.
	if err := chromedp.Do(tctx); err != nil {
		t.Fatalf("browser: start %s: %v", path, err)
	}
	go b.collectConsole(chromedp.Console(tctx))
	return b
}

// chromiumPath finds Chromium: $CHROMIUM, else /usr/bin/chromium.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		missing(t, fmt.Sprintf("chromium not found at %s (run scripts/ensure-chromium.sh)", path))
	}
	return path
}

func (b *browser) collectConsole(messages iter.Seq2[chromedp.ConsoleMessage, error]) {
	for msg, err := range messages {
		if err != nil {
			return
		}
		b.mu.Lock()
		b.console = append(b.console, fmt.Sprintf("[%s] %s", msg.Type, msg.Text))
		b.mu.Unlock()
	}
}

// consoleProblems returns console entries that mean the page is broken: uncaught
// exceptions and Content-Security-Policy violations. (A 401 from the start-up session check
// is expected and not among them.)
func (b *browser) consoleProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var problems []string
	for _, line := range b.console {
		if strings.HasPrefix(line, "[exception]") || strings.Contains(line, "Content Security Policy") {
			problems = append(problems, line)
		}
	}
	return problems
}

func (b *browser) dumpConsole() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.console) > 0 {
		b.t.Logf("browser console:\n  %s", strings.Join(b.console, "\n  "))
	}
}

// do runs actions and fails the test on error, naming the step.
func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v", step, err)
	}
}

// eval evaluates a JavaScript expression (awaiting a Promise) into T.
func eval[T any](b *browser, step, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", step, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is truthy.
func (b *browser) waitFor(step, predicate string, timeout time.Duration) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.t.Fatalf("browser: %s: waiting for %s: %v", step, predicate, err)
	}
}

// cookieValues returns the values of every cookie the browser holds for url, httpOnly
// ones included (DevTools sees them; page JavaScript does not).
func (b *browser) cookieValues(url string) []string {
	b.t.Helper()
	getCookies := func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		params := network.GetCookiesParams{URLs: []string{url}}
		r, err := cdp.Call(ctx, t, network.GetCookies, params)
		return r.Cookies, err
	}
	cookies, err := chromedp.Run(b.ctx, getCookies)
	if err != nil {
		b.t.Fatalf("browser: read cookies: %v", err)
	}
	values := make([]string, 0, len(cookies))
	for _, c := range cookies {
		values = append(values, c.Value)
	}
	return values
}

// screenshot saves a full-page PNG into $E2E_SCREENSHOT_DIR (for people looking at the
// page) or the test's temp folder, and returns the path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("browser: screenshot: %v", err)
	}
	dir := os.Getenv("E2E_SCREENSHOT_DIR")
	if dir == "" {
		dir = b.t.TempDir()
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("browser: write screenshot: %v", err)
	}
	return path
}

// bytesFromJS reads a Uint8Array expression as bytes (base64 through Evaluate, since
// DevTools returns JSON).
func bytesFromJS(b *browser, step, expr string) []byte {
	b.t.Helper()
	encoded := eval[string](b, step, fmt.Sprintf(`(() => {
		const bytes = %s;
		let text = "";
		for (let i = 0; i < bytes.length; i += 0x8000) {
			text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
		}
		return btoa(text);
	})()`, expr))
	return decodeBase64(b.t, encoded)
}

func decodeBase64(t *testing.T, encoded string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatalf("decode base64 from the page: %v", err)
	}
	return raw
}
