package api

import (
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

// tokenRequest is the body of POST /api/token. ExpiresIn stays raw so that only a plain
// JSON integer is accepted: "60", 60.5 and 6e1 are refused rather than coerced.
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

// mintToken checks the session, the request and the user's policy, mints one token for
// one grant, seals it into that grant's cookie and answers its metadata.
func (s *server) mintToken(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}

	var in tokenRequest
	if !s.decodeJSON(w, r, &in) {
		return
	}
	if in.Grant == nil {
		reply.Error(w, http.StatusBadRequest, "bad_request", `the body must name a "grant"`)
		return
	}
	grant, err := token.ParseGrant(*in.Grant)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "bad_request",
			fmt.Sprintf("unknown grant %q; use tts, stt or agent", truncate(*in.Grant, 16)))
		return
	}
	if !sess.Allows(grant) {
		s.log.Info("token_mint_failed", "reason", "grant_forbidden", "user", sess.User,
			"grant", string(grant))
		reply.Error(w, http.StatusForbidden, "grant_forbidden",
			fmt.Sprintf("your account may not use the %s grant", grant))
		return
	}

	ttl, err := s.lifetime(sess, in.ExpiresIn)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}

	if ok, wait := s.mintLimits.allow(sess.User); !ok {
		s.reject(r, "mint_rate_limited", "user", sess.User, "grant", string(grant))
		setRetryAfter(w, wait)
		reply.Error(w, http.StatusTooManyRequests, "rate_limited",
			"too many token requests; try again later")
		return
	}

	tok, err := s.cfg.Minter.Mint(r.Context(), grant, ttl)
	if err != nil {
		s.mintFailed(w, r, sess, grant, err)
		return
	}

	value, err := s.cfg.Sealer.Seal(sess.ID, tok)
	if err != nil {
		s.log.Error("token_mint_failed", "reason", "seal", "user", sess.User,
			"grant", string(grant), "error", err.Error())
		reply.Error(w, http.StatusBadGateway, "upstream_error",
			"the upstream token does not fit in a cookie")
		return
	}
	// The usable life: what was asked less what Cartesia's whole-second expiry may cost.
	// Clients count it from before they sent their request, which is before the minter's
	// own stopwatch started, so they give up on the token no later than tok.ExpiresAt.
	secs := max(int((ttl-token.ExpiryResolution)/time.Second), 1)
	http.SetCookie(w, newCookie(seal.CookieName(grant), value, time.Duration(secs)*time.Second))

	s.log.Info("token_minted", "user", sess.User, "grant", string(grant), "ttl_s", secs,
		"session", session.Fingerprint(sess.ID))
	reply.JSON(w, http.StatusOK, tokenInfo{
		Grant:      grant,
		ExpiresIn:  secs,
		ExpiresAt:  tok.ExpiresAt.UnixMilli(),
		ServerTime: s.cfg.Now().UnixMilli(),
	})
}

// lifetime picks the token lifetime: the requested whole seconds within
// 2..min(user max, 3600), or, when absent or null, the configured default clamped to the
// user's maximum.
func (s *server) lifetime(sess session.Session, raw json.RawMessage) (time.Duration, error) {
	maxTTL := min(sess.MaxTTL, token.MaxTTL)
	if maxTTL <= 0 {
		maxTTL = token.MaxTTL
	}
	if len(raw) == 0 || string(raw) == "null" {
		return min(s.cfg.TokenTTL, maxTTL), nil
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
			if ue.RetryAfter != "" {
				w.Header().Set("Retry-After", ue.RetryAfter)
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
