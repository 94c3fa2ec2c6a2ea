// Command emulator serves the offline Cartesia API emulator on its own, for trying clients
// against it or running tests without bin/server.
//
// Configuration (flags override the environment):
//
//	ADDR / -addr                listen address, default 127.0.0.1:8090 (port 0 picks one)
//	EMULATOR_API_KEYS           comma-separated accepted API keys; unset: one random key,
//	                            printed once on stdout
//	EMULATOR_PACE / -pace       audio pacing: 0 as fast as possible, 1 real time
//	TLS_CERT_FILE / -tls-cert   PEM certificate chain: serve https and wss (with the key)
//	TLS_KEY_FILE / -tls-key     PEM private key for the certificate
//	-public                     allow a non-loopback listen address
//
// TLS exists for clients that insist on wss:// (the official JS SDK's TTS WebSocket does,
// whatever its base URL says); tests give it a certificate from a CA they make.
//
// It prints the URL it listens on, logs one line per request on stderr, and shuts down
// gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/voxgate/voxgate/server/emulator"
)

const defaultAddr = "127.0.0.1:8090"

// shutdownGrace is how long in-flight streams get to finish after a signal; a paced TTS
// stream can be long, so after this they are cut.
const shutdownGrace = 5 * time.Second

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr(getenv, "ADDR", defaultAddr), "listen address (env ADDR)")
	paceText := fs.String("pace", envOr(getenv, "EMULATOR_PACE", "0"),
		"audio pacing: 0 = as fast as possible, 1 = real time (env EMULATOR_PACE)")
	public := fs.Bool("public", false, "allow listening on a non-loopback address")
	certFile := fs.String("tls-cert", getenv("TLS_CERT_FILE"),
		"PEM certificate chain: serve https (with -tls-key; env TLS_CERT_FILE)")
	keyFile := fs.String("tls-key", getenv("TLS_KEY_FILE"),
		"PEM private key for -tls-cert (env TLS_KEY_FILE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	pace, err := strconv.ParseFloat(*paceText, 64)
	if err != nil || pace < 0 {
		return fmt.Errorf("pace %q must be a number >= 0", *paceText)
	}
	if !*public && !isLoopback(*addr) {
		return fmt.Errorf("refusing to listen on %q: it is not a loopback address, and the "+
			"emulator accepts anyone holding its test keys; pass -public to do it anyway", *addr)
	}

	tlsConfig, err := loadTLS(*certFile, *keyFile)
	if err != nil {
		return err
	}

	keys, generated := apiKeys(getenv("EMULATOR_API_KEYS"))
	log := slog.New(slog.NewTextHandler(stderr, nil))
	emu, err := emulator.New(emulator.Config{APIKeys: keys, Pace: pace, Logger: log})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	scheme := "http"
	if tlsConfig != nil {
		ln, scheme = tls.NewListener(ln, tlsConfig), "https"
	}
	srv := &http.Server{
		Handler:           emu,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: paced audio streams legitimately run for minutes.
	}

	fmt.Fprintf(stdout, "Cartesia emulator listening on %s://%s\n", scheme, ln.Addr())
	if generated {
		// The only place a key is ever shown; it is not logged.
		fmt.Fprintf(stdout, "API key (EMULATOR_API_KEYS was unset): %s\n", keys[0])
	}
	log.Info("emulator started", "addr", ln.Addr().String(), "scheme", scheme,
		"keys", len(keys), "pace", pace)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("emulator shutting down", "grace", shutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close() // cut the streams that outlived the grace period
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// loadTLS reads the certificate pair, or returns nil when neither file is named. Only
// HTTP/1.1 is offered, so WebSocket clients always get a plain Upgrade.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS_CERT_FILE and TLS_KEY_FILE (-tls-cert, -tls-key) " +
			"must be set together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate and key: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}, nil
}

func envOr(getenv func(string) string, name, fallback string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return fallback
}

// apiKeys parses EMULATOR_API_KEYS, or draws one random key when it is empty.
func apiKeys(list string) (keys []string, generated bool) {
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		return keys, false
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return []string{"sk_car_emu_" + hex.EncodeToString(b)}, true
}

// isLoopback reports whether addr listens on loopback only. An empty host means every
// interface; host names other than localhost are not resolved and count as public.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
