package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
)

// driverJS counts and makes the calls inside each page (see driver.js).
//
//go:embed driver.js
var driverJS string

// stepTimeout bounds one page step: loading the client, signing in, one evaluation.
const stepTimeout = 20 * time.Second

// browser is one headless Chromium with a fresh profile; its tabs share cookies, so one
// sign-in serves them all, as it does for a person with two tabs open.
type browser struct {
	ctx     context.Context // the first tab
	cancel  []context.CancelFunc
	profile string

	mu      sync.Mutex
	console []string // uncaught exceptions and CSP violations, from every tab
}

// tab is one tab of the demo page.
type tab struct {
	n   int
	ctx context.Context
}

// openBrowser starts Chromium with its first tab.
func openBrowser(ctx context.Context, path string) (*browser, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("soak: chromium not found at %s (run make chromium): %w", path, err)
	}
	profile, err := os.MkdirTemp("", "voxgate-soak-chromium-")
	if err != nil {
		return nil, fmt.Errorf("soak: chromium profile: %w", err)
	}
	options := []chromedp.ExecAllocatorOption{
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
		chromedp.UserDataDir(profile),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, options...)
	tctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{ctx: tctx, cancel: []context.CancelFunc{cancelTab, cancelAlloc},
		profile: profile}
	if err := chromedp.Do(tctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("soak: start %s: %w", path, err)
	}
	go b.collect(tctx)
	return b, nil
}

// Close ends every tab and the browser, and removes the profile.
func (b *browser) Close() {
	for i := len(b.cancel) - 1; i >= 0; i-- {
		b.cancel[i]()
	}
	b.cancel = nil
	_ = os.RemoveAll(b.profile)
}

// collect keeps the console entries that mean a page is broken. Call it before the tab
// navigates.
func (b *browser) collect(ctx context.Context) {
	for msg, err := range chromedp.Console(ctx) {
		if err != nil {
			return
		}
		line := fmt.Sprintf("[%s] %s", msg.Type, msg.Text)
		if msg.Type == "exception" || strings.Contains(line, "Content Security Policy") {
			b.mu.Lock()
			b.console = append(b.console, line)
			b.mu.Unlock()
		}
	}
}

func (b *browser) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// signedInTabs opens the demo page in n tabs: the first signs in through the form, the
// others find the session cookie and restore the session on load.
func (b *browser) signedInTabs(srv *server, n int) ([]*tab, error) {
	tabs := make([]*tab, 0, n)
	for i := range n {
		ctx := b.ctx
		if i > 0 {
			var cancel context.CancelFunc
			ctx, cancel = chromedp.NewContext(b.ctx) // a new tab in the same browser
			b.cancel = append(b.cancel, cancel)
			if err := chromedp.Do(ctx); err != nil {
				return nil, fmt.Errorf("soak: open tab %d: %w", i+1, err)
			}
			go b.collect(ctx)
		}
		t := &tab{n: i + 1, ctx: ctx}
		if err := t.open(srv, i == 0); err != nil {
			return nil, err
		}
		tabs = append(tabs, t)
	}
	return tabs, nil
}

func (t *tab) open(srv *server, signIn bool) error {
	if err := chromedp.Do(t.ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		return fmt.Errorf("soak: tab %d: open the page: %w", t.n, err)
	}
	if !signIn {
		return t.waitFor("restore the session", `document.body.dataset.app === "signed-in"`)
	}

	if err := t.waitFor("load the client", `document.body.dataset.app === "signed-out"`); err != nil {
		return err
	}
	// The form may come pre-filled (the demo user's name): empty it before typing.
	cleared, err := chromedp.Run(t.ctx, chromedp.Evaluate[bool](`(() => {
		for (const id of ["username", "password"]) document.getElementById(id).value = "";
		return true;
	})()`))
	if err != nil || !cleared {
		return fmt.Errorf("soak: tab %d: empty the sign-in form: %w", t.n, err)
	}
	err = chromedp.Do(t.ctx,
		chromedp.SendKeys(chromedp.ID("username"), srv.User),
		chromedp.SendKeys(chromedp.ID("password"), srv.Password),
		chromedp.Click(chromedp.ID("signin-submit")),
	)
	if err != nil {
		return fmt.Errorf("soak: tab %d: submit the sign-in form: %w", t.n, err)
	}
	return t.waitFor("sign in", `document.body.dataset.app === "signed-in"`)
}

func (t *tab) waitFor(step, predicate string) error {
	_, err := chromedp.Run(t.ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout)))
	if err != nil {
		// What the page shows says more than the timeout does.
		state, _ := chromedp.Run(t.ctx, chromedp.Evaluate[string](`JSON.stringify({
			app: document.body.dataset.app,
			error: (document.getElementById("signin-error") || {}).textContent || ""})`))
		return fmt.Errorf("soak: tab %d: %s (page: %s): %w", t.n, step, state, err)
	}
	return nil
}

// start installs the driver and starts its call loops.
func (t *tab) start(clips []clip, s settings) error {
	if _, err := chromedp.Run(t.ctx, chromedp.Evaluate[bool](driverJS+"\n;true")); err != nil {
		return fmt.Errorf("install the driver: %w", err)
	}
	config, err := json.Marshal(map[string]any{
		"clips":      clips,
		"durationMs": s.Duration.Milliseconds(),
		"workers":    s.Workers,
		"gapMs":      s.Gap.Milliseconds(),
	})
	if err != nil {
		return fmt.Errorf("encode the driver's settings: %w", err)
	}
	started, err := chromedp.Run(t.ctx,
		chromedp.Evaluate[bool](fmt.Sprintf("voxgateSoak.start(%s)", config)))
	if err != nil {
		return fmt.Errorf("start the calls: %w", err)
	}
	if !started {
		return errors.New("the driver was already running")
	}
	return nil
}

// snapshot reads the tab's counts.
func (t *tab) snapshot() (snapshot, error) {
	ctx, cancel := context.WithTimeout(t.ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[snapshot]("voxgateSoak.snapshot()"))
}
