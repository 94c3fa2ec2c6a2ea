package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// tokenRequest is the body of POST /api/token and /api/token/direct. ExpiresIn stays raw
// so that only a plain JSON integer is accepted: "60", 60.5 and 6e1 are refused rather
// than coerced.
type tokenRequest struct {
	Grant     *string         `json:"grant"`
	ExpiresIn json.RawMessage `json:"expires_in"`
}

// tokenInfo is the body of a successful mint. It never carries the token.
type tokenInfo struct {
	Grant      token.Grant `json:"grant"`
	ExpiresIn  int         `json:"expires_in"`
	ExpiresAt  int64       `json:"expires_at"`
	ServerTime int64       `json:"server_time"`
}

var plainInteger = regexp.MustCompile(`^-?[0-9]{1,10}$`)

// mintRoute is what differs between the two token routes; mint runs the steps they
// share.
type mintRoute struct {
	// maxTTL caps the lifetime a request may ask for (and the user's maximum caps it
	// further); defaultTTL is the lifetime when the request names none.
	maxTTL, defaultTTL time.Duration
	// limits is the route's own per-user bucket; limitReason names its refusals in logs.
	limits      *limiter
	limitReason string
	// admit runs the route's own grant checks after the grant is known to be a real one,
	// and answers the refusal itself.
	admit func(w http.ResponseWriter, sess session.Session, grant token.Grant) bool
}

// minted is one token minted for a signed-in user, with its usable life in seconds.
type minted struct {
	sess session.Session
	tok  token.Token
	secs int
}

// cookieRoute is POST /api/token's policy: every grant the user has, up to
// token.MaxTTL, Config.TokenTTL by default, under Config.MintLimit.
func (s *server) cookieRoute() mintRoute {
	return mintRoute{
		maxTTL:      token.MaxTTL,
		defaultTTL:  s.cfg.TokenTTL,
		limits:      s.mintLimits,
		limitReason: "mint_rate_limited",
		admit:       s.admitPolicy,
	}
}

// mintToken mints one token for one grant, seals it into that grant's cookie and
// answers its metadata, never the token.
func (s *server) mintToken(w http.ResponseWriter, r *http.Request) {
	m, ok := s.mint(w, r, s.cookieRoute())
	if !ok {
		return
	}

	value, err := s.cfg.Sealer.Seal(m.sess.ID, m.tok)
	if err != nil {
		s.log.Error("token_mint_failed", "reason", "seal", "user", m.sess.User,
			"grant", string(m.tok.Grant), "error", err.Error())
		reply.Error(w, http.StatusBadGateway, "upstream_error",
			"the upstream token does not fit in a cookie")
		return
	}
	http.SetCookie(w, newCookie(seal.CookieName(m.tok.Grant), value,
		time.Duration(m.secs)*time.Second))

	s.log.Info("token_minted", "user", m.sess.User, "grant", string(m.tok.Grant),
		"ttl_s", m.secs, "session", session.Fingerprint(m.sess.ID))
	reply.JSON(w, http.StatusOK, tokenInfo{
		Grant:      m.tok.Grant,
		ExpiresIn:  m.secs,
		ExpiresAt:  m.tok.ExpiresAt.UnixMilli(),
		ServerTime: s.cfg.Now().UnixMilli(),
	})
}

// mint runs the steps both token routes share, in order: the session, the body, the
// grant, the route's grant checks, the lifetime, the user's cool-down after upstream's
// 429, the user's mints in flight (maxMintsInFlight), the route's rate limit, the server-wide mint rate, the upstream quota breaker and
// the mint itself. On any failure it has answered and returns false.
func (s *server) mint(w http.ResponseWriter, r *http.Request, rt mintRoute) (minted, bool) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return minted{}, false
	}

	var in tokenRequest
	if !s.decodeJSON(w, r, &in) {
		return minted{}, false
	}
	if in.Grant == nil {
		reply.Error(w, http.StatusBadRequest, "bad_request", `the body must name a "grant"`)
		return minted{}, false
	}
	grant, err := token.ParseGrant(*in.Grant)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "bad_request",
			fmt.Sprintf("unknown grant %q; use tts, stt or agent", truncate(*in.Grant, 16)))
		return minted{}, false
	}
	if !rt.admit(w, sess, grant) {
		return minted{}, false
	}

	ttl, err := lifetime(sess, in.ExpiresIn, rt.maxTTL, rt.defaultTTL)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "bad_request", err.Error())
		return minted{}, false
	}

	// A user cooling down after upstream's 429 is answered before their bucket is
	// touched: the refusal costs them nothing, and upstream nothing either. When the
	// global circuit is open too, its cool-down may be the longer one.
	if wait, cooling := s.coolDowns.waiting(sess.User); cooling {
		s.log.Info("token_mint_failed", "reason", "user_cool_down", "user", sess.User,
			"grant", string(grant))
		setRetryAfter(w, max(wait, s.quota.waiting()))
		reply.Error(w, http.StatusTooManyRequests, "rate_limited",
			"the upstream is rate limiting your token requests; try again later")
		return minted{}, false
	}
	// A user's mints in flight are capped before any bucket is touched, so that the
	// refusal spends nothing; the place is held until the mint has its answer.
	if !s.inFlight.acquire(sess.User) {
		s.reject(r, "mints_in_flight", "user", sess.User, "grant", string(grant))
		setRetryAfter(w, time.Second)
		reply.Error(w, http.StatusTooManyRequests, "rate_limited",
			"too many token requests at once; wait for the ones already sent")
		return minted{}, false
	}
	defer s.inFlight.release(sess.User)
	if ok, wait := rt.limits.allow(sess.User); !ok {
		s.reject(r, rt.limitReason, "user", sess.User, "grant", string(grant))
		setRetryAfter(w, wait)
		reply.Error(w, http.StatusTooManyRequests, "rate_limited",
			"too many token requests; try again later")
		return minted{}, false
	}
	// The server-wide rate comes after the user's own, so that one user's refused
	// requests spend nothing of everyone's.
	if ok, wait := s.mintTotal.allow(""); !ok {
		s.log.Warn("token_mint_failed", "reason", "mint_rate_total", "user", sess.User,
			"grant", string(grant))
		setRetryAfter(w, wait)
		reply.Error(w, http.StatusTooManyRequests, "rate_limited",
			"this server is minting too many tokens; try again later")
		return minted{}, false
	}

	// Checked after the limits: a request refused there must not take the probe of a
	// half-open circuit, which would then never be sent.
	leave, refused := s.quota.allow()
	if refused != nil {
		s.quotaRefused(w, sess, grant, refused)
		return minted{}, false
	}
	tok, err := s.callMinter(r.Context(), leave, sess.User, grant, ttl)
	if err != nil {
		s.mintFailed(w, r, sess, grant, err)
		return minted{}, false
	}
	// The usable life: what was asked less what Cartesia's whole-second expiry may cost.
	// Clients count it from before they sent their request, which is before the minter's
	// own stopwatch started, so they give up on the token no later than tok.ExpiresAt.
	secs := max(int((ttl-token.ExpiryResolution)/time.Second), 1)
	return minted{sess: sess, tok: tok, secs: secs}, true
}

// callMinter asks the Minter for a token and tells the breakers what came of it, on every
// path: a Minter that panics (net/http recovers the panic and drops the connection) ends
// its mint as abandoned, so that a probe of a half-open circuit never stays in flight.
// The panic itself goes on to net/http, which logs it: it is a bug, not an upstream
// answer, and must not read like one.
func (s *server) callMinter(ctx context.Context, leave ticket, user string, grant token.Grant,
	ttl time.Duration) (token.Token, error) {
	answered := false
	defer func() {
		if !answered {
			s.quota.abandon(leave)
			s.log.Error("token_mint_failed", "reason", "minter_panic", "user", user,
				"grant", string(grant), "probe", leave.probe)
		}
	}()

	tok, err := s.cfg.Minter.Mint(ctx, grant, ttl)
	answered = true
	s.recordMint(leave, user, grant, err)
	return tok, err
}

// recordMint tells the breakers what upstream answered a mint. A 429 that is not the
// probe of a half-open circuit goes to the user's cool-down first (see coolDowns), and
// reaches the global breaker only when it is account-wide; every other answer goes to
// the breaker as it is.
func (s *server) recordMint(leave ticket, user string, grant token.Grant, err error) {
	var ue *token.UpstreamError
	if !leave.probe && errors.As(err, &ue) && ue.Status == http.StatusTooManyRequests &&
		!s.coolDowns.accountWide(user, grant, ue) {
		return // one user's burst: nothing learned about the account
	}
	s.quota.record(leave, err)
}

// admitPolicy refuses a grant that the user's policy does not list.
func (s *server) admitPolicy(w http.ResponseWriter, sess session.Session,
	grant token.Grant) bool {
	if sess.Allows(grant) {
		return true
	}
	s.log.Info("token_mint_failed", "reason", "grant_forbidden", "user", sess.User,
		"grant", string(grant))
	reply.Error(w, http.StatusForbidden, "grant_forbidden",
		fmt.Sprintf("your account may not use the %s grant", grant))
	return false
}

// lifetime picks a token lifetime: the requested whole seconds within
// 2..min(user max, routeMax), or, when absent or null, defaultTTL clamped to that same
// maximum.
func lifetime(sess session.Session, raw json.RawMessage,
	routeMax, defaultTTL time.Duration) (time.Duration, error) {
	maxTTL := routeMax
	if sess.MaxTTL > 0 {
		maxTTL = min(sess.MaxTTL, routeMax)
	}
	if len(raw) == 0 || string(raw) == "null" {
		return min(defaultTTL, maxTTL), nil
	}

	lo, hi := int(token.MinTTL/time.Second), int(maxTTL/time.Second)
	bad := fmt.Errorf(`"expires_in" must be an integer number of seconds from %d to %d`, lo, hi)
	if !plainInteger.Match(raw) {
		return 0, bad
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < lo || n > hi {
		return 0, bad
	}
	return time.Duration(n) * time.Second, nil
}

// mintFailed maps a Minter error onto our answer and logs it. Upstream's own words are
// passed on only as the structured `upstream` object.
func (s *server) mintFailed(w http.ResponseWriter, r *http.Request, sess session.Session,
	grant token.Grant, err error) {
	var ue *token.UpstreamError
	var te *token.TransportError
	attrs := []any{"user", sess.User, "grant", string(grant)}

	switch {
	case errors.As(err, &ue):
		s.log.Warn("token_mint_failed", append(attrs, "reason", "upstream_status",
			"upstream_status", ue.Status, "error_code", ue.Code, "request_id", ue.RequestID)...)
		if ue.Status == http.StatusTooManyRequests {
			// Without a usable Retry-After from upstream, ours names the cool-down that
			// recordMint has just imposed, so that the page waits it out instead of
			// retrying into refusals.
			if ra := token.CapRetryAfter(ue.RetryAfter, s.cfg.Now()); ra != "" {
				w.Header().Set("Retry-After", ra)
			} else {
				wait, _ := s.coolDowns.waiting(sess.User)
				setRetryAfter(w, max(wait, s.quota.waiting(), minQuotaCoolDown))
			}
			reply.ErrorDetail(w, http.StatusTooManyRequests, reply.Detail{Code: "rate_limited",
				Message: "the upstream is rate limiting token requests", Upstream: ue.Reply()})
			return
		}
		reply.ErrorDetail(w, http.StatusBadGateway, reply.Detail{Code: "upstream_error",
			Message: "the upstream refused to mint a token", Upstream: ue.Reply()})

	case errors.As(err, &te) && te.Timeout:
		s.log.Warn("token_mint_failed", append(attrs, "reason", "upstream_timeout")...)
		reply.Error(w, http.StatusGatewayTimeout, "upstream_timeout",
			"the upstream did not answer in time")

	case errors.As(err, &te):
		if r.Context().Err() != nil {
			s.log.Info("token_mint_failed", append(attrs, "reason", "client_closed")...)
			return
		}
		s.log.Warn("token_mint_failed", append(attrs, "reason", "upstream_unavailable",
			"error", te.Error())...)
		reply.Error(w, http.StatusBadGateway, "upstream_unavailable",
			"the upstream is unreachable")

	default:
		s.log.Warn("token_mint_failed", append(attrs, "reason", "bad_response",
			"error", err.Error())...)
		reply.Error(w, http.StatusBadGateway, "upstream_error",
			"the upstream answered something that is not a token")
	}
}

// quotaRefused answers a mint that the quota breaker kept from the upstream: 429
// rate_limited when the upstream rate limited us, else 503 upstream_unavailable, with our
// own Retry-After in whole seconds. The event that matters for alerting was logged once,
// when the circuit opened; this one only counts the refusals.
func (s *server) quotaRefused(w http.ResponseWriter, sess session.Session, grant token.Grant,
	ref *refusal) {
	s.log.Info("token_mint_failed", "reason", "upstream_quota", "user", sess.User,
		"grant", string(grant), "status", ref.status)
	setRetryAfter(w, ref.wait)
	if ref.status == http.StatusTooManyRequests {
		reply.Error(w, http.StatusTooManyRequests, "rate_limited",
			"the upstream is rate limiting token requests; try again later")
		return
	}
	reply.Error(w, http.StatusServiceUnavailable, "upstream_unavailable",
		"the upstream cannot mint tokens right now; try again later")
}
