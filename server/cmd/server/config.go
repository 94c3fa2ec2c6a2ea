package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/token"
)

// defaultUpstream is Cartesia's API origin, used when a key is set and UPSTREAM_URL is not.
const defaultUpstream = "https://api.cartesia.ai"

// config is everything the command line and environment say. Rendering it (fmt, JSON,
// slog) is safe: the key is a token.APIKey and the demo password a secret.
type config struct {
	Addr            string
	Upstream        string
	CartesiaVersion string
	TokenTTL        int
	UsersFile       string
	DemoUser        string
	PublicOrigin    string
	AllowedHosts    []string
	CookieKeyFile   string
	EmulatorPace    float64
	TokenMintRate   int
	// TokenMintRateTotal is the mint rate of all users together, per minute.
	TokenMintRateTotal int
	LogFormat          string
	APIKey             token.APIKey

	// DirectGrants turns direct mode on for these grants (empty: off); DirectTokenTTL
	// (seconds, 2 to 120) is the longest direct token and DirectMintRate the direct mints
	// per user per minute.
	DirectGrants   []token.Grant
	DirectTokenTTL int
	DirectMintRate int
	// CORSOrigins are the exact origins whose pages may call the API with credentials.
	CORSOrigins []string
	// SpoolDir is where uploads are spooled while they are checked; empty means the
	// system temp directory. start checks it (see checkSpoolDir).
	SpoolDir string

	// TLSCertFile and TLSKeyFile, both set, make the server speak https itself (PEM files);
	// PUBLIC_ORIGIN then defaults to https://<bound address>.
	TLSCertFile string
	TLSKeyFile  string

	// DemoPassword renders as [REDACTED]; the only place it is ever shown is the stdout
	// announcement for people.
	DemoPassword secret
}

// secret is configuration text that every rendering (fmt verbs, JSON, slog) hides.
type secret string

// Format implements fmt.Formatter, covering every verb including %#v.
func (secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "[REDACTED]") }

// MarshalJSON implements json.Marshaler.
func (secret) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }

// LogValue implements slog.LogValuer.
func (secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// parseConfig reads flags, each defaulting to its environment twin, then to the built-in
// default: a flag beats the environment, which beats the default. The API key and the
// demo password have no flags.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	var problems []error
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envInt := func(name string, def int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s=%q is not an integer", name, v))
		}
		return n
	}
	envFloat := func(name string, def float64) float64 {
		v := getenv(name)
		if v == "" {
			return def
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s=%q is not a number", name, v))
		}
		return f
	}

	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", env("ADDR", "127.0.0.1:8080"),
		"listen address; port 0 picks a free one (env ADDR)")
	fs.StringVar(&c.Upstream, "upstream", env("UPSTREAM_URL", ""),
		"upstream origin; default Cartesia's API with a key, else the emulator (env UPSTREAM_URL)")
	fs.StringVar(&c.CartesiaVersion, "cartesia-version", env("CARTESIA_VERSION", "2026-03-01"),
		"Cartesia-Version header sent upstream (env CARTESIA_VERSION)")
	fs.IntVar(&c.TokenTTL, "token-ttl", envInt("TOKEN_TTL", 300),
		"access-token lifetime in seconds, 2 to 3600 (env TOKEN_TTL)")
	fs.StringVar(&c.UsersFile, "users", env("USERS_FILE", ""),
		"users file; unset: the demo user only (env USERS_FILE)")
	fs.StringVar(&c.DemoUser, "demo-user", env("DEMO_USER", "demo"),
		"the demo user's name (env DEMO_USER; password from DEMO_PASSWORD or random)")
	fs.StringVar(&c.PublicOrigin, "public-origin", env("PUBLIC_ORIGIN", ""),
		"exact origin pages are served from; default http://<bound address> (env PUBLIC_ORIGIN)")
	hosts := fs.String("allowed-hosts", env("ALLOWED_HOSTS", ""),
		"comma-separated Host allowlist; default from the public origin (env ALLOWED_HOSTS)")
	fs.Float64Var(&c.EmulatorPace, "emulator-pace", envFloat("EMULATOR_PACE", 0),
		"emulator audio pacing: 1 = real time, 0 = as fast as possible (env EMULATOR_PACE)")
	fs.IntVar(&c.TokenMintRate, "token-mint-rate", envInt("TOKEN_MINT_RATE", 30),
		"token mints per user per minute, bursts of half that (env TOKEN_MINT_RATE)")
	fs.IntVar(&c.TokenMintRateTotal, "token-mint-rate-total",
		envInt("TOKEN_MINT_RATE_TOTAL", 600), "token mints per minute for all users "+
			"together, both token routes, bursts of a tenth (env TOKEN_MINT_RATE_TOTAL)")
	fs.StringVar(&c.LogFormat, "log-format", env("LOG_FORMAT", "text"),
		"log format on stderr: text or json (env LOG_FORMAT)")
	fs.StringVar(&c.TLSCertFile, "tls-cert", env("TLS_CERT_FILE", ""),
		"PEM certificate chain: serve https (with -tls-key; env TLS_CERT_FILE)")
	fs.StringVar(&c.TLSKeyFile, "tls-key", env("TLS_KEY_FILE", ""),
		"PEM private key for -tls-cert (env TLS_KEY_FILE)")
	directGrants := fs.String("direct-grants", env("DIRECT_GRANTS", ""),
		"grants the page may hold tokens for itself, a subset of tts,stt,agent; "+
			"empty: direct mode off (env DIRECT_GRANTS)")
	fs.IntVar(&c.DirectTokenTTL, "direct-token-ttl", envInt("DIRECT_TOKEN_TTL", 60),
		"longest direct token in seconds, 2 to 120 (env DIRECT_TOKEN_TTL)")
	fs.IntVar(&c.DirectMintRate, "direct-mint-rate", envInt("DIRECT_MINT_RATE", 20),
		"direct token mints per user per minute, bursts of half that (env DIRECT_MINT_RATE)")
	corsOrigins := fs.String("cors-origins", env("CORS_ORIGINS", ""),
		"comma-separated exact origins whose pages may call the API with credentials; "+
			"empty: no CORS (env CORS_ORIGINS)")
	fs.StringVar(&c.SpoolDir, "spool-dir", env("SPOOL_DIR", ""),
		"existing directory for spooling uploads while they are checked; "+
			"empty: the system temp directory (env SPOOL_DIR)")

	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}

	c.CookieKeyFile = getenv("COOKIE_KEY_FILE")
	c.DemoPassword = secret(getenv("DEMO_PASSWORD"))
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.AllowedHosts = append(c.AllowedHosts, h)
		}
	}

	grants, err := parseDirectGrants(*directGrants)
	if err != nil {
		problems = append(problems, err)
	}
	c.DirectGrants = grants
	origins, err := parseCORSOrigins(*corsOrigins)
	if err != nil {
		problems = append(problems, err)
	}
	c.CORSOrigins = origins

	if c.DirectTokenTTL > maxDirectTokenTTL {
		problems = append(problems, fmt.Errorf("DIRECT_TOKEN_TTL %d is above the hard cap of "+
			"%d seconds: a direct token sits in page memory, readable by any script there",
			c.DirectTokenTTL, maxDirectTokenTTL))
	} else if c.DirectTokenTTL < 2 {
		problems = append(problems, fmt.Errorf("DIRECT_TOKEN_TTL %d is outside 2..%d",
			c.DirectTokenTTL, maxDirectTokenTTL))
	}
	if c.DirectMintRate < 1 || c.DirectMintRate > 6000 {
		problems = append(problems,
			fmt.Errorf("DIRECT_MINT_RATE %d is outside 1..6000 a minute", c.DirectMintRate))
	}
	if c.TokenTTL < 2 || c.TokenTTL > 3600 {
		problems = append(problems, fmt.Errorf("TOKEN_TTL %d is outside 2..3600", c.TokenTTL))
	}
	if c.TokenMintRateTotal < 1 || c.TokenMintRateTotal > 600000 {
		problems = append(problems, fmt.Errorf("TOKEN_MINT_RATE_TOTAL %d is outside "+
			"1..600000 a minute", c.TokenMintRateTotal))
	}
	if c.TokenMintRate < 1 || c.TokenMintRate > 6000 {
		problems = append(problems,
			fmt.Errorf("TOKEN_MINT_RATE %d is outside 1..6000 a minute", c.TokenMintRate))
	}
	if c.EmulatorPace < 0 {
		problems = append(problems, fmt.Errorf("EMULATOR_PACE %v is negative", c.EmulatorPace))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Errorf("LOG_FORMAT %q is neither text nor json",
			c.LogFormat))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		problems = append(problems,
			errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together"))
	}
	return c, errors.Join(problems...)
}

// maxDirectTokenTTL is api.MaxDirectTokenTTL in the seconds DIRECT_TOKEN_TTL is written in.
const maxDirectTokenTTL = int(api.MaxDirectTokenTTL / time.Second)

// parseDirectGrants reads DIRECT_GRANTS: a comma-separated subset of tts,stt,agent, each
// at most once. Empty means direct mode off.
func parseDirectGrants(list string) ([]token.Grant, error) {
	var grants []token.Grant
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		g, err := token.ParseGrant(item)
		if err != nil {
			return nil, fmt.Errorf("DIRECT_GRANTS: %w", err)
		}
		if slices.Contains(grants, g) {
			return nil, fmt.Errorf("DIRECT_GRANTS lists %s twice", g)
		}
		grants = append(grants, g)
	}
	return grants, nil
}

// parseCORSOrigins reads CORS_ORIGINS: comma-separated exact origins (see
// api.CheckCORSOrigin); "*" and "null" are refused.
func parseCORSOrigins(list string) ([]string, error) {
	var origins []string
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if err := api.CheckCORSOrigin(item); err != nil {
			return nil, fmt.Errorf("CORS_ORIGINS: %w", err)
		}
		origins = append(origins, item)
	}
	return origins, nil
}

// checkSpoolDir checks SPOOL_DIR before anything listens (see proxy.CheckSpoolDir), so
// that the error names the variable. Empty (the system temp directory) is not checked.
func checkSpoolDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := proxy.CheckSpoolDir(dir); err != nil {
		return fmt.Errorf("SPOOL_DIR: %w", err)
	}
	return nil
}

// servesTLS reports whether the server terminates TLS itself.
func (c config) servesTLS() bool { return c.TLSCertFile != "" }

// scheme is the scheme of the default public origin.
func (c config) scheme() string {
	if c.servesTLS() {
		return "https"
	}
	return "http"
}

// loadTLS reads the certificate pair once at start, so a bad file fails the start rather
// than the first handshake. Only HTTP/1.1 is offered: browsers then open WebSockets with a
// plain Upgrade (which the proxy expects), never as HTTP/2 extended CONNECT streams.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// checkExposure refuses to listen beyond loopback unless pages are served over https:
// every cookie is Secure, and browsers only treat plain http as secure for localhost, so
// a plain-http public address could not keep anyone signed in (and would send passwords
// in clear text). A server terminating TLS itself (servesTLS) is https already, and then
// an explicit http:// PUBLIC_ORIGIN is a contradiction wherever it listens.
func checkExposure(addr, publicOrigin string, servesTLS bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("ADDR %q is not host:port: %w", addr, err)
	}
	if servesTLS {
		if strings.HasPrefix(publicOrigin, "http://") {
			return fmt.Errorf("PUBLIC_ORIGIN %q is http:// but the server serves TLS: pages "+
				"come from https://, and the Secure cookies would not match", publicOrigin)
		}
		return nil
	}
	if isLoopback(host) {
		return nil
	}
	if !strings.HasPrefix(publicOrigin, "https://") {
		return fmt.Errorf("ADDR %q is not a loopback address, so PUBLIC_ORIGIN must be the "+
			"https:// origin users reach (behind a TLS terminator): the session and token "+
			"cookies are Secure and browsers drop them over plain http", addr)
	}
	return nil
}

// isLoopback reports whether a listen host stays on this machine. An empty host means
// every interface, which does not.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkDirectReach refuses direct mode (DIRECT_GRANTS) when pages served from
// publicOrigin could not call upstream themselves, so that the start fails with the
// variables to change rather than every direct call failing in the browser:
//   - an https page calling a plain-http upstream off loopback is mixed content, which
//     browsers block for fetch and ws:// alike (UPSTREAM_URL refuses such an upstream
//     with a key anyway; this keeps direct mode safe if that rule ever loosens);
//   - an upstream on loopback (the built-in emulator, or a local one at UPSTREAM_URL)
//     with a PUBLIC_ORIGIN host off loopback: the page runs on another machine, whose own
//     loopback has no upstream.
//
// Browsers count http://127.0.0.1, http://[::1] and http://localhost as secure, so a
// loopback upstream from a loopback https page passes.
//
// Limitation: a PUBLIC_ORIGIN host name that only this machine maps to loopback (an
// /etc/hosts entry) is refused with the emulator too, although a browser on this machine
// could reach it; use localhost or 127.0.0.1 there.
func checkDirectReach(direct []token.Grant, publicOrigin, upstream string) error {
	if len(direct) == 0 {
		return nil
	}
	page, err := url.Parse(publicOrigin)
	if err != nil {
		return fmt.Errorf("PUBLIC_ORIGIN %q: %w", publicOrigin, err)
	}
	up, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("upstream %q: %w", upstream, err)
	}

	upLoopback := isLoopback(up.Hostname())
	if page.Scheme == "https" && up.Scheme == "http" && !upLoopback {
		return fmt.Errorf("DIRECT_GRANTS is set, but PUBLIC_ORIGIN %q is https and the "+
			"upstream %q plain http: browsers block such mixed content, so no direct call "+
			"could work; give UPSTREAM_URL an https:// upstream or unset DIRECT_GRANTS",
			publicOrigin, upstream)
	}
	if upLoopback && !isLoopbackPageHost(page.Hostname()) {
		return fmt.Errorf("DIRECT_GRANTS is set, but the upstream %q is on this machine's "+
			"loopback (the built-in emulator, or UPSTREAM_URL) while PUBLIC_ORIGIN %q is not: "+
			"pages there would call their own machine; unset DIRECT_GRANTS, serve pages from "+
			"a loopback PUBLIC_ORIGIN, or set CARTESIA_API_KEY and an UPSTREAM_URL that "+
			"browsers can reach", upstream, publicOrigin)
	}
	return nil
}

// isLoopbackPageHost reports whether a browser resolves a page's host to its own
// loopback: isLoopback's hosts, and any name under .localhost, which browsers map there
// themselves.
func isLoopbackPageHost(host string) bool {
	return isLoopback(host) || strings.HasSuffix(strings.ToLower(host), ".localhost")
}

// originDefaults fills PUBLIC_ORIGIN from the scheme served and the address actually bound
// (so port 0 works) and ALLOWED_HOSTS from PUBLIC_ORIGIN, adding localhost:<port> when
// bound to loopback.
func originDefaults(publicOrigin string, allowed []string, scheme string,
	bound net.Addr) (string, []string, error) {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return "", nil, fmt.Errorf("listener address %v is not TCP", bound)
	}

	origin := publicOrigin
	if origin == "" {
		origin = scheme + "://" + tcp.String()
	}
	origin, host, err := proxy.ParseOrigin(origin)
	if err != nil {
		return "", nil, fmt.Errorf("PUBLIC_ORIGIN %q is not scheme://host[:port]", publicOrigin)
	}

	if len(allowed) > 0 {
		return origin, allowed, nil
	}
	hosts := []string{host}
	if tcp.IP.IsLoopback() {
		local := net.JoinHostPort("localhost", strconv.Itoa(tcp.Port))
		if local != host {
			hosts = append(hosts, local)
		}
	}
	return origin, hosts, nil
}

// checkUpstream validates UPSTREAM_URL for use with a real key: https, or http only to a
// loopback host (a local emulator), and a bare origin with nothing that could carry
// credentials or redirect paths.
func checkUpstream(raw string) (string, error) {
	if raw == "" {
		return defaultUpstream, nil
	}
	origin, _, err := proxy.ParseOrigin(raw)
	if err != nil {
		return "", fmt.Errorf("UPSTREAM_URL %q is not a bare origin: https://host[:port] "+
			"(or http to loopback)", raw)
	}
	u, err := url.Parse(origin)
	if err != nil {
		return "", fmt.Errorf("UPSTREAM_URL %q: %w", raw, err)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "", fmt.Errorf("UPSTREAM_URL %q: plain http is only allowed to a loopback "+
			"host; the API key would cross the network in clear text", raw)
	}
	return origin, nil
}
