package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// Direct mode hands the page a token for it to call the upstream itself: lower latency
// than the proxy, weaker containment. It is therefore off unless the deployment lists
// grants in Config.DirectGrants, and narrow when on: one grant per token, at most
// MaxDirectTokenTTL, its own stricter rate limit, no cookie.
//
// Limitation: a direct token is readable by any script running in the page (an XSS, a
// compromised dependency) and usable from anywhere until it expires; what it does passes
// none of the proxy's checks: the per-user call and stream caps, closing streams at
// sign-out, the agent-id allowlist (hence no direct agent tokens for users with one).

// directToken is the body of a successful direct mint: the token itself, the one grant
// it carries (also as a list, the shape Cartesia's own grants take) and the same timing
// fields as tokenInfo.
type directToken struct {
	Token      string        `json:"token"`
	Grant      token.Grant   `json:"grant"`
	Grants     []token.Grant `json:"grants"`
	ExpiresIn  int           `json:"expires_in"`
	ExpiresAt  int64         `json:"expires_at"`
	ServerTime int64         `json:"server_time"`
}

// directInfo is the "direct" object of GET /api/info, present only in direct mode: what
// the page needs to call the upstream itself.
type directInfo struct {
	Grants          []token.Grant `json:"grants"`
	Upstream        string        `json:"upstream"`
	CartesiaVersion string        `json:"cartesia_version"`
	MaxTTL          int           `json:"max_ttl"`
}

// checkDirect validates the direct-mode part of cfg, fills in its defaults and returns
// the direct grants as a set (empty when direct mode is off).
func checkDirect(cfg *Config) (map[token.Grant]bool, error) {
	if cfg.DirectTokenTTL == 0 {
		cfg.DirectTokenTTL = DefaultDirectTokenTTL
	}
	if cfg.DirectTokenTTL < token.MinTTL || cfg.DirectTokenTTL > MaxDirectTokenTTL ||
		cfg.DirectTokenTTL%time.Second != 0 {
		return nil, fmt.Errorf("api: direct token TTL %v is not whole seconds from %d to %d",
			cfg.DirectTokenTTL, token.MinTTL/time.Second, MaxDirectTokenTTL/time.Second)
	}
	cfg.DirectMintLimit = orDefault(cfg.DirectMintLimit, DefaultDirectMintLimit)

	grants := map[token.Grant]bool{}
	for _, g := range cfg.DirectGrants {
		if _, err := token.ParseGrant(string(g)); err != nil {
			return nil, fmt.Errorf("api: direct grants: %w", err)
		}
		grants[g] = true
	}
	return grants, nil
}

// directOn reports whether direct mode is on.
func (s *server) directOn() bool { return len(s.directGrants) > 0 }

// directInfo describes direct mode for GET /api/info, or is nil when it is off.
func (s *server) directInfo() *directInfo {
	if !s.directOn() {
		return nil
	}
	var grants []token.Grant
	for _, g := range token.Grants() {
		if s.directGrants[g] {
			grants = append(grants, g)
		}
	}
	return &directInfo{
		Grants:          grants,
		Upstream:        s.upstreamOrigin,
		CartesiaVersion: s.cfg.CartesiaVersion,
		MaxTTL:          int(s.cfg.DirectTokenTTL / time.Second),
	}
}

// directRoute is POST /api/token/direct's policy: only Config.DirectGrants, and only
// those the user's policy lists, up to Config.DirectTokenTTL, under
// Config.DirectMintLimit. The default lifetime is Config.TokenTTL, which lifetime clamps
// to that same maximum.
func (s *server) directRoute() mintRoute {
	return mintRoute{
		maxTTL:      s.cfg.DirectTokenTTL,
		defaultTTL:  s.cfg.TokenTTL,
		limits:      s.directLimits,
		limitReason: "direct_mint_rate_limited",
		admit:       s.admitDirect,
	}
}

// admitDirect refuses, in order: a grant the deployment does not hand out directly, a
// grant the user's policy does not list, and the agent grant for a user limited to some
// agent ids. That list is enforced by the proxy alone; an agent token in the page could
// call any agent, so such users get agent tokens only through the proxy.
func (s *server) admitDirect(w http.ResponseWriter, sess session.Session,
	grant token.Grant) bool {
	if !s.directGrants[grant] {
		s.directRefused(w, sess, grant, "grant_not_direct",
			fmt.Sprintf("the %s grant is not available in direct mode here", grant))
		return false
	}
	if !s.admitPolicy(w, sess, grant) {
		return false
	}
	if grant == token.Agent && !sess.AllowsEveryAgent() {
		s.directRefused(w, sess, grant, "agent_list",
			"your account may call only some agents, which only the proxy can enforce; "+
				"use the agent grant through the proxy")
		return false
	}
	return true
}

// directRefused answers 403 direct_not_allowed and logs why.
func (s *server) directRefused(w http.ResponseWriter, sess session.Session, grant token.Grant,
	reason, msg string) {
	s.log.Info("token_mint_failed", "reason", "direct_not_allowed", "check", reason,
		"user", sess.User, "grant", string(grant))
	reply.Error(w, http.StatusForbidden, "direct_not_allowed", msg)
}

// mintDirect mints one token for one grant and answers the token itself. Nothing about
// it is stored: no cookie is set, the response may not be cached, and the audit log
// holds the token's fingerprint, never the token.
func (s *server) mintDirect(w http.ResponseWriter, r *http.Request) {
	m, ok := s.mint(w, r, s.directRoute())
	if !ok {
		return
	}

	s.log.Info("token_issued_direct", "user", m.sess.User, "grant", string(m.tok.Grant),
		"ttl_s", m.secs, "session", session.Fingerprint(m.sess.ID),
		"token_fingerprint", m.tok.Value.Fingerprint())
	w.Header().Set("Pragma", "no-cache") // for HTTP/1.0 caches that ignore Cache-Control
	reply.JSON(w, http.StatusOK, directToken{
		Token:      m.tok.Value.Reveal(),
		Grant:      m.tok.Grant,
		Grants:     []token.Grant{m.tok.Grant},
		ExpiresIn:  m.secs,
		ExpiresAt:  m.tok.ExpiresAt.UnixMilli(),
		ServerTime: s.cfg.Now().UnixMilli(),
	})
}
