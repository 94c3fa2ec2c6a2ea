// Command soak is the token soak test of issue 5: it runs bin/server with a token lifetime
// of a few seconds, opens the demo page in two tabs of one headless Chromium, signs in, and
// lets the page's voxgate client make many concurrent calls of every kind (tts.bytes,
// tts.sse, TTS WebSocket contexts, STT WebSockets with tone-coded audio, batch STT, agent
// calls) at random intervals for a few minutes. It then compares what happened with what
// should have: no call may fail (least of all on an expired token), and the tokens minted
// per grant should be close to the ideal, elapsed time divided by the usable lifetime.
//
// It prints a table and writes it, with the date, the machine and the settings, to
// scripts/soak/RESULTS.md. It is a benchmark, not a test: `make soak` runs it, `make test`
// does not.
//
// With -direct (`make soak-direct`) the server runs in direct mode for every grant
// (DIRECT_GRANTS=tts,stt,agent, DIRECT_TOKEN_TTL the soak's lifetime): each tab mints its
// own tokens at POST /api/token/direct, keeps them in wasm memory and calls the emulator
// itself. Tabs do not share direct tokens, so the ideal is tabs × elapsed ÷ usable
// lifetime per grant, counted from the server's token_issued_direct events. The run also
// fails if the server proxied a call or minted a cookie token for a direct grant, if the
// emulator saw fewer token-authenticated calls than succeeded, or if any line the server
// printed holds "eyJ", the start of every emulator token. It writes
// scripts/soak/RESULTS-direct.md.
//
// It owns scripts/soak and nothing else: it starts its own server on 127.0.0.1:0 with the
// built-in emulator (a clean environment, so no API key reaches it), sends every request to
// that loopback address (in direct mode the pages also call the emulator's own loopback
// address, which the soak checks before starting), and stops the server and the browser it
// started when it ends.
//
// Usage:
//
//	go run ./scripts/soak [-direct] [-duration 3m] [-ttl 4] [-server bin/server] [-out FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"
)

// settings are the knobs of one soak run.
type settings struct {
	Duration time.Duration
	TTL      int // TOKEN_TTL, and DIRECT_TOKEN_TTL in direct mode, seconds
	MintRate int // TOKEN_MINT_RATE, per user per minute
	Tabs     int
	Workers  int           // call loops per tab
	Gap      time.Duration // mean pause between one worker's calls
	Server   string
	Chromium string
	Out      string

	// Direct runs the server in direct mode for every grant; DirectMintRate is its
	// DIRECT_MINT_RATE, per user per minute.
	Direct         bool
	DirectMintRate int
}

func main() {
	var s settings
	flag.DurationVar(&s.Duration, "duration", 3*time.Minute, "how long the page makes calls")
	flag.IntVar(&s.TTL, "ttl", 4, "token lifetime in seconds (the server's TOKEN_TTL, 2..3600)")
	// 600 a minute is ten times what two tabs need with a 4 s lifetime, yet a client that
	// floods the token endpoint still meets the limit and shows as rate_limited failures.
	flag.IntVar(&s.MintRate, "mint-rate", 600, "the server's TOKEN_MINT_RATE (mints per minute)")
	flag.BoolVar(&s.Direct, "direct", false, "direct mode: DIRECT_GRANTS=tts,stt,agent, each "+
		"tab minting its own tokens and calling the emulator itself")
	// Two tabs each minting three grants every 2.4 s need 150 a minute: 600 leaves the same
	// factor of room as -mint-rate does for the proxy soak's one set of shared tokens.
	flag.IntVar(&s.DirectMintRate, "direct-mint-rate", 600,
		"the server's DIRECT_MINT_RATE in direct mode (mints per minute)")
	flag.IntVar(&s.Tabs, "tabs", 2, "tabs of one browser, sharing the session")
	flag.IntVar(&s.Workers, "workers", 6, "concurrent call loops per tab")
	flag.DurationVar(&s.Gap, "gap", 400*time.Millisecond,
		"mean random pause between one loop's calls (uniform 0..2*gap)")
	flag.StringVar(&s.Server, "server", "bin/server", "the server binary")
	flag.StringVar(&s.Chromium, "chromium", "/usr/bin/chromium", "the Chromium binary")
	flag.StringVar(&s.Out, "out", "", "where to write the results "+
		"(default scripts/soak/RESULTS.md, or RESULTS-direct.md with -direct)")
	flag.Parse()
	if s.Out == "" {
		s.Out = "scripts/soak/RESULTS.md"
		if s.Direct {
			s.Out = "scripts/soak/RESULTS-direct.md"
		}
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := s.check(); err != nil {
		log.Error("soak: bad flags", "error", err)
		os.Exit(2)
	}

	// The whole run is bounded: the calls, then start-up and draining with room to spare.
	ctx, cancel := context.WithTimeout(context.Background(), s.Duration+3*time.Minute)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	res, err := run(ctx, log, s)
	if err != nil {
		log.Error("soak: run", "error", err)
		os.Exit(1)
	}

	fmt.Print(res.Table())
	if err := os.WriteFile(s.Out, []byte(res.Markdown()), 0o644); err != nil {
		log.Error("soak: write results", "path", s.Out, "error", err)
		os.Exit(1)
	}
	log.Info("soak: results written", "path", s.Out, "verdict", res.Verdict().Summary)
	if !res.Verdict().Pass {
		os.Exit(1)
	}
}

// check refuses settings that cannot make a meaningful run.
func (s settings) check() error {
	var problems []error
	if s.Duration < 10*time.Second || s.Duration > time.Hour {
		problems = append(problems, fmt.Errorf("-duration %s is outside 10s..1h", s.Duration))
	}
	if s.TTL < 2 || s.TTL > 3600 {
		problems = append(problems, fmt.Errorf("-ttl %d is outside 2..3600", s.TTL))
	}
	if s.MintRate < 1 || s.MintRate > 6000 {
		problems = append(problems, fmt.Errorf("-mint-rate %d is outside 1..6000", s.MintRate))
	}
	if s.Direct && s.TTL > maxDirectTTL {
		problems = append(problems, fmt.Errorf("-ttl %d is over %d, the server's cap on "+
			"direct tokens", s.TTL, maxDirectTTL))
	}
	if s.Direct && (s.DirectMintRate < 1 || s.DirectMintRate > 6000) {
		problems = append(problems, fmt.Errorf("-direct-mint-rate %d is outside 1..6000",
			s.DirectMintRate))
	}
	if s.Tabs < 1 || s.Tabs > 4 {
		problems = append(problems, fmt.Errorf("-tabs %d is outside 1..4", s.Tabs))
	}
	if s.Workers < 1 || s.Workers > 32 {
		problems = append(problems, fmt.Errorf("-workers %d is outside 1..32", s.Workers))
	}
	if s.Gap < 0 || s.Gap > time.Minute {
		problems = append(problems, fmt.Errorf("-gap %s is outside 0..1m", s.Gap))
	}
	return errors.Join(problems...)
}

// maxDirectTTL is the server's hard cap on DIRECT_TOKEN_TTL, in seconds: more stops it.
const maxDirectTTL = 120

// run starts the server and the browser, drives the soak and collects the result.
func run(ctx context.Context, log *slog.Logger, s settings) (*result, error) {
	machine := describeMachine(s.Chromium)

	srv, err := startServer(ctx, s)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	log.Info("soak: server up", "url", srv.URL, "ttl_s", s.TTL, "mint_rate", s.MintRate,
		"direct", s.Direct)

	br, err := openBrowser(ctx, s.Chromium)
	if err != nil {
		return nil, err
	}
	defer br.Close()

	tabs, err := br.signedInTabs(srv, s.Tabs)
	if err != nil {
		return nil, err
	}
	clips, err := makeClips()
	if err != nil {
		return nil, err
	}

	// Mints before this mark (none, normally: sign-in mints nothing) are not the soak's.
	mark := srv.Mark()
	started := time.Now()
	for i, tab := range tabs {
		if err := tab.start(clips, s); err != nil {
			return nil, fmt.Errorf("soak: start tab %d: %w", i+1, err)
		}
	}
	log.Info("soak: calls started", "tabs", len(tabs), "workers_per_tab", s.Workers,
		"duration", s.Duration)

	snaps, err := watch(ctx, log, srv, tabs, mark, s.Duration)
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(started)
	server := tallyLog(srv.Since(mark))

	// Mints are counted up to here: afterwards the clients' proactive refreshes go on
	// without calls. What the calls themselves left in the log (a WebSocket's emulator
	// line comes when it closes) and what the server printed is read once it has stopped.
	srv.Stop()
	return &result{
		Date:      started.UTC(),
		Machine:   machine,
		Settings:  s,
		Elapsed:   elapsed,
		Tabs:      snaps,
		Server:    server,
		Final:     tallyLog(srv.Since(mark)),
		Leaks:     srv.Leaks(),
		Exception: br.exceptions(),
		Tree:      describeTree(),
	}, nil
}

// drainTimeout is how long calls in flight at the end may take to finish; it is longer
// than the driver's own per-call timeout, so every call ends counted.
const drainTimeout = 30 * time.Second

// watch prints progress every 15 s until the duration has passed, then waits for the calls
// in flight, and returns each tab's final counts.
func watch(ctx context.Context, log *slog.Logger, srv *server, tabs []*tab, mark int,
	d time.Duration) ([]snapshot, error) {
	end := time.Now().Add(d)
	deadline := end.Add(drainTimeout)
	ticker := time.NewTicker(15 * time.Second)
	defer ticker.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()

	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("soak: interrupted: %w", ctx.Err())
		case <-srv.exited:
			return nil, errors.New("soak: the server exited during the run")
		case <-ticker.C:
			snaps, err := snapshots(tabs)
			if err != nil {
				return nil, err
			}
			calls, failed, inflight := 0, 0, 0
			for _, s := range snaps {
				c, f := s.totals()
				calls, failed, inflight = calls+c, failed+f, inflight+s.Inflight
			}
			mints := tallyLog(srv.Since(mark)).totalMints()
			log.Info("soak: progress", "elapsed", time.Since(end.Add(-d)).Round(time.Second),
				"calls", calls, "failed", failed, "in_flight", inflight, "mints", mints)
		case <-poll.C:
			if time.Now().Before(end) {
				continue
			}
			snaps, err := snapshots(tabs)
			if err != nil {
				return nil, err
			}
			done := true
			for _, s := range snaps {
				done = done && s.Done
			}
			if done {
				return snaps, nil
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("soak: calls still in flight %s after the end", drainTimeout)
			}
		}
	}
}

func snapshots(tabs []*tab) ([]snapshot, error) {
	snaps := make([]snapshot, 0, len(tabs))
	for i, t := range tabs {
		s, err := t.snapshot()
		if err != nil {
			return nil, fmt.Errorf("soak: read tab %d: %w", i+1, err)
		}
		snaps = append(snaps, s)
	}
	return snaps, nil
}
