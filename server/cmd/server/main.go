// Command server is voxgate's companion server: it signs users in, mints one short-lived
// Cartesia access token per grant into sealed httpOnly cookies, proxies the page's
// /cartesia/... calls with those tokens, and serves the page and the wasm bundle.
//
// The Cartesia API key comes only from CARTESIA_API_KEY or CARTESIA_API_KEY_FILE (flags
// show in process listings). Without a key the built-in emulator is the upstream. Every
// flag has an environment twin; see the README's Configuration table. With TLS_CERT_FILE
// and TLS_KEY_FILE it serves https (HTTP/1.1 only) itself, and PUBLIC_ORIGIN defaults to
// https://<bound address>; otherwise a TLS terminator in front provides https.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/emulator"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
	"github.com/voxgate/voxgate/web"
)

// Server limits. There is deliberately no WriteTimeout: it would cut long audio streams;
// the proxy bounds each write itself.
const (
	readHeaderTimeout = 5 * time.Second
	maxHeaderBytes    = 64 << 10
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
)

// bcryptCost hashes the demo password; tests lower it.
var bcryptCost = bcrypt.DefaultCost

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// run parses the configuration, starts everything and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string,
	stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.LogFormat, stderr)

	a, err := start(cfg, getenv, logger)
	if err != nil {
		return err
	}
	a.announce(stdout)
	return a.serve(ctx)
}

// newLogger writes structured events to w, as text for people or JSON for machines.
// The JSON handler escapes control characters, so client-supplied text cannot forge lines.
func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// app is a started server: its listener, the emulator (if any) and what to print.
type app struct {
	log          *slog.Logger
	ln           net.Listener
	srv          *http.Server
	url          string
	hosts        []string
	demoUser     string
	demoPassword string // printed once on stdout, never logged
	emulator     *http.Server
	emulatorURL  string
}

// start binds the listener, picks the upstream and composes the handler.
func start(cfg config, getenv func(string) string, logger *slog.Logger) (*app, error) {
	if err := checkExposure(cfg.Addr, cfg.PublicOrigin, cfg.servesTLS()); err != nil {
		return nil, err
	}
	if err := checkSpoolDir(cfg.SpoolDir); err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if cfg.servesTLS() {
		c, err := loadTLS(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		tlsConfig = c
	}

	key, err := token.LoadAPIKey(getenv)
	useEmulator := errors.Is(err, token.ErrNoAPIKey)
	if err != nil && !useEmulator {
		return nil, err
	}
	cfg.APIKey = key

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	a := &app{log: logger, ln: ln}
	ok := false
	defer func() {
		if !ok {
			a.close()
		}
	}()

	origin, hosts, err := originDefaults(cfg.PublicOrigin, cfg.AllowedHosts, cfg.scheme(),
		ln.Addr())
	if err != nil {
		return nil, err
	}
	a.url, a.hosts = origin, hosts

	upstream, kind := cfg.Upstream, api.UpstreamCartesia
	if useEmulator {
		if cfg.Upstream != "" {
			return nil, errors.New("UPSTREAM_URL is set but no API key is: set " +
				"CARTESIA_API_KEY (or _FILE), or unset UPSTREAM_URL to use the built-in emulator")
		}
		if cfg.APIKey, upstream, err = a.startEmulator(cfg.EmulatorPace); err != nil {
			return nil, err
		}
		kind = api.UpstreamEmulator
	} else if upstream, err = checkUpstream(cfg.Upstream); err != nil {
		return nil, err
	}

	if err := checkDirectReach(cfg.DirectGrants, a.url, upstream); err != nil {
		return nil, err
	}

	handler, err := compose(cfg, a, upstream, kind, logger)
	if err != nil {
		return nil, err
	}
	a.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// net/http's own answer to "OPTIONS *" reads the request body with no deadline;
		// sent to the handler instead, it gets the body deadline every request gets.
		DisableGeneralOptionsHandler: true,
	}
	if tlsConfig != nil {
		// Wrapping the listener (rather than ServeTLS) keeps the one Serve path and
		// offers exactly the protocols loadTLS chose.
		a.ln = tls.NewListener(a.ln, tlsConfig)
	}

	if kind == api.UpstreamEmulator {
		logger.Warn("upstream", "kind", kind, "url", upstream, "notice",
			"no CARTESIA_API_KEY: the built-in Cartesia emulator is the upstream; "+
				"its audio is a tone code of the text, not speech")
	} else {
		logger.Info("upstream", "kind", kind, "url", upstream)
	}
	if len(cfg.DirectGrants) > 0 {
		logger.Warn("direct_mode", "grants", cfg.DirectGrants, "max_ttl_s", cfg.DirectTokenTTL,
			"notice", "POST /api/token/direct hands these tokens to pages, which call the "+
				"upstream themselves; the proxy's per-user limits do not apply to those calls")
	}
	// The effective values, not the raw settings: what a person reading the log needs.
	cfg.Upstream, cfg.PublicOrigin, cfg.AllowedHosts = upstream, a.url, hosts
	logger.Info("config", "config", cfg)

	ok = true
	return a, nil
}

// compose builds the sealer, users, minter and the api handler.
func compose(cfg config, a *app, upstream, kind string, logger *slog.Logger) (http.Handler, error) {
	sealer, err := newSealer(cfg.CookieKeyFile)
	if err != nil {
		return nil, err
	}

	users, err := loadUsers(cfg, a)
	if err != nil {
		return nil, err
	}
	dir, err := session.NewDirectory(users)
	if err != nil {
		return nil, err
	}

	minter, err := token.NewMinter(token.MinterConfig{
		Upstream: upstream,
		Key:      cfg.APIKey,
		Version:  cfg.CartesiaVersion,
	})
	if err != nil {
		return nil, err
	}

	return api.New(api.Config{
		PublicOrigin:    a.url,
		AllowedHosts:    a.hosts,
		Upstream:        upstream,
		UpstreamKind:    kind,
		CartesiaVersion: cfg.CartesiaVersion,
		Minter:          minter,
		Sealer:          sealer,
		Users:           dir,
		TokenTTL:        time.Duration(cfg.TokenTTL) * time.Second,
		MintLimit:       mintLimit(cfg.TokenMintRate),
		MintLimitTotal:  totalMintLimit(cfg.TokenMintRateTotal),
		DirectGrants:    cfg.DirectGrants,
		DirectTokenTTL:  time.Duration(cfg.DirectTokenTTL) * time.Second,
		DirectMintLimit: mintLimit(cfg.DirectMintRate),
		CORSOrigins:     cfg.CORSOrigins,
		SpoolDir:        cfg.SpoolDir,
		Static:          web.Files,
		Logger:          logger,
	})
}

// mintLimit turns "n mints a minute" into a bucket of n/2 (at least 1).
func mintLimit(perMinute int) api.RateLimit {
	return api.RateLimit{Every: time.Minute / time.Duration(perMinute),
		Burst: max(1, perMinute/2)}
}

// totalMintLimit turns "n mints a minute for everyone" into a bucket of n/10 (at least 1):
// smaller bursts than one user's, since it guards upstream's limit for the whole key.
func totalMintLimit(perMinute int) api.RateLimit {
	return api.RateLimit{Every: time.Minute / time.Duration(perMinute),
		Burst: max(1, perMinute/10)}
}

// newSealer loads COOKIE_KEY_FILE, or makes a key that lives as long as the process.
//
// Limitation: without COOKIE_KEY_FILE every restart invalidates all token cookies, and
// replicas cannot open each other's cookies.
func newSealer(keyFile string) (*seal.Sealer, error) {
	if keyFile == "" {
		return seal.NewRandom()
	}
	key, err := seal.LoadKeyFile(keyFile)
	if err != nil {
		return nil, err
	}
	return seal.New(key)
}

// loadUsers reads USERS_FILE, or makes the demo user (remembering its password to print).
func loadUsers(cfg config, a *app) ([]session.User, error) {
	if cfg.UsersFile != "" {
		return session.LoadUsersFile(cfg.UsersFile)
	}
	u, password, err := session.DemoUser(cfg.DemoUser, string(cfg.DemoPassword), bcryptCost)
	if err != nil {
		return nil, err
	}
	a.demoUser, a.demoPassword = u.Name, password
	return []session.User{u}, nil
}

// startEmulator runs the emulator on its own loopback listener with a random key that
// exists only in this process.
func (a *app) startEmulator(pace float64) (token.APIKey, string, error) {
	key, plain := token.RandomAPIKey()
	emu, err := emulator.New(emulator.Config{
		APIKeys: []string{plain},
		Now:     time.Now,
		Pace:    pace,
		Logger:  a.log.With("component", "emulator"),
	})
	if err != nil {
		return token.APIKey{}, "", fmt.Errorf("start emulator: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return token.APIKey{}, "", fmt.Errorf("listen for emulator: %w", err)
	}
	a.emulator = &http.Server{
		Handler:           emu,
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.emulatorURL = "http://" + ln.Addr().String()
	go func() { _ = a.emulator.Serve(ln) }()
	return key, a.emulatorURL, nil
}

// announce prints what a person needs on stdout. The demo password appears here and
// nowhere else.
func (a *app) announce(w io.Writer) {
	fmt.Fprintf(w, "voxgate is listening on %s\n", a.url)
	if a.demoUser != "" {
		fmt.Fprintf(w, "sign in as %q with password %q\n", a.demoUser, a.demoPassword)
	}
	if a.emulator != nil {
		fmt.Fprintln(w, "NOTE: no CARTESIA_API_KEY set: using the built-in Cartesia emulator "+
			"(offline; audio is a tone code, not speech)")
	}
}

// serve answers requests until ctx ends, then shuts down gracefully.
func (a *app) serve(ctx context.Context) error {
	a.log.Info("listening", "url", a.url, "addr", a.ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()

	select {
	case err := <-errc:
		a.close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	a.log.Info("shutting_down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := a.srv.Shutdown(sctx)
	if a.emulator != nil {
		err = errors.Join(err, a.emulator.Shutdown(sctx))
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// close releases the listeners of an app that never started serving.
func (a *app) close() {
	if a.ln != nil {
		_ = a.ln.Close()
	}
	if a.emulator != nil {
		_ = a.emulator.Close()
	}
}
