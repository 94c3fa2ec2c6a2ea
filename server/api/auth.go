package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// sessionInfo is the body of a successful login and of GET /api/session.
type sessionInfo struct {
	User             string        `json:"user"`
	Grants           []token.Grant `json:"grants"`
	SessionExpiresAt int64         `json:"session_expires_at"`
}

func infoOf(s session.Session) sessionInfo {
	grants := s.Grants
	if grants == nil {
		grants = []token.Grant{}
	}
	return sessionInfo{User: s.User, Grants: grants, SessionExpiresAt: s.ExpiresAt.UnixMilli()}
}

// knownAddressTTL is how long a successful sign-in keeps its address known for that
// user name (see login).
const knownAddressTTL = 30 * 24 * time.Hour

// login checks a name and password and starts a fresh session. Any session the request
// already carried is ended first, so an id planted before sign-in never becomes valid
// (session fixation).
//
// Password guessing is throttled, never turned into a lockout of the real user (OWASP's
// advice; a hard per-name lock lets anyone lock anyone out). The body is checked first,
// so junk spends no bucket. Then three token buckets, each taken only when the one
// before allowed the attempt:
//   - per client address (LoginIPLimit): one address spraying many names;
//   - per user name and address (LoginPairLimit): one address guessing one name; an
//     empty bucket refuses, even the right password, so a guesser learns nothing;
//   - per user name (LoginUserLimit): many addresses guessing one name. An empty bucket
//     refuses only addresses that have not signed in as that name within
//     knownAddressTTL; the user's own known addresses are still checked. Its burst and
//     rate exceed the pair limit's, so no single address can empty it.
//
// Limitation: while many addresses keep one name's bucket empty, its user cannot sign in
// from an address they have not used before. Everyone behind one address (a NAT, or a
// reverse proxy, since forwarding headers are not trusted) shares the address and pair
// buckets, and behind a reverse proxy one sign-in makes that address known for everyone.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if !s.decodeJSON(w, r, &in) {
		return
	}
	if in.Username == nil || in.Password == nil || *in.Username == "" || *in.Password == "" {
		reply.Error(w, http.StatusBadRequest, "bad_request",
			`the body must be {"username": "...", "password": "..."}`)
		return
	}
	name, addr := *in.Username, addressKey(r.RemoteAddr)

	if ok, wait := s.loginByIP.allow(addr); !ok {
		s.loginLimited(w, r, wait, "address", name)
		return
	}
	if ok, wait := s.loginByPair.allow(name + "\x00" + addr); !ok {
		s.loginLimited(w, r, wait, "user_address", name)
		return
	}
	if ok, wait := s.loginByUser.allow(name); !ok && !s.isKnownAddress(name, addr) {
		s.loginLimited(w, r, wait, "user", name)
		return
	}

	user, ok := s.cfg.Users.Authenticate(name, *in.Password)
	if !ok {
		s.log.Info("login_failed", "reason", "invalid_credentials", "user", logName(name),
			"remote", r.RemoteAddr)
		reply.Error(w, http.StatusUnauthorized, "invalid_credentials",
			"unknown user name or wrong password")
		return
	}

	if old, err := r.Cookie(session.CookieName); err == nil && old.Value != "" {
		_ = s.sessions.Delete(old.Value)
		s.proxy.EndSession(old.Value)
	}
	sess, err := s.sessions.Create(user)
	if err != nil {
		s.log.Error("login_failed", "reason", "session_store", "user", user.Name,
			"error", err.Error())
		reply.Error(w, http.StatusServiceUnavailable, "unavailable",
			"cannot start a session right now")
		return
	}

	// Token cookies sealed for the old session can never open again; drop them too.
	for _, g := range token.Grants() {
		if _, err := r.Cookie(seal.CookieName(g)); err == nil {
			http.SetCookie(w, deletionCookie(seal.CookieName(g)))
		}
	}
	http.SetCookie(w, newCookie(session.CookieName, sess.ID,
		sess.AbsoluteExpiry.Sub(s.cfg.Now())))
	s.rememberAddress(name, addr)

	s.log.Info("login", "user", sess.User, "session", session.Fingerprint(sess.ID),
		"remote", r.RemoteAddr)
	reply.JSON(w, http.StatusOK, infoOf(sess))
}

// loginLimited answers a sign-in refused by the bucket named scope.
func (s *server) loginLimited(w http.ResponseWriter, r *http.Request, wait time.Duration,
	scope, name string) {
	s.reject(r, "login_rate_limited", "scope", scope, "user", logName(name))
	setRetryAfter(w, wait)
	reply.Error(w, http.StatusTooManyRequests, "rate_limited",
		"too many sign-in attempts; try again later")
}

// isKnownAddress reports whether addr signed in as name within knownAddressTTL.
func (s *server) isKnownAddress(name, addr string) bool {
	now := s.cfg.Now()
	s.knownAddrsMu.Lock()
	defer s.knownAddrsMu.Unlock()
	s.knownAddrs.dropOlder(now.Add(-knownAddressTTL))
	_, ok := s.knownAddrs.get(name+"\x00"+addr, now)
	return ok
}

// rememberAddress records a successful sign-in as name from addr.
//
// Limitation: the memory is this process's, bounded to the most recent maxLimiterKeys
// pairs; a restart or a flood of sign-ins to other accounts forgets an address.
func (s *server) rememberAddress(name, addr string) {
	now := s.cfg.Now()
	s.knownAddrsMu.Lock()
	defer s.knownAddrsMu.Unlock()
	s.knownAddrs.put(name+"\x00"+addr, now, now)
}

// logout ends the session (if any), closes the WebSockets it opened through the proxy
// and clears every voxgate cookie. It always answers 204: the result a caller wants, no
// cookies and no session, holds either way.
func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(session.CookieName); err == nil && c.Value != "" {
		user := ""
		if sess, err := s.sessions.Get(c.Value); err == nil {
			user = sess.User
		}
		_ = s.sessions.Delete(c.Value)
		// Deleted first, so no new socket can open for the session while its open ones
		// are told 1008 "session ended".
		sockets := s.proxy.EndSession(c.Value)
		s.log.Info("logout", "user", user, "session", session.Fingerprint(c.Value),
			"websockets_closed", sockets)
	}

	http.SetCookie(w, deletionCookie(session.CookieName))
	for _, g := range token.Grants() {
		http.SetCookie(w, deletionCookie(seal.CookieName(g)))
	}
	// Also every cookie of the origin, including any this server does not know by name
	// (browsers honour it on secure origins, localhost included).
	w.Header().Set("Clear-Site-Data", `"cookies"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// whoami answers who is signed in, counting as activity.
func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	reply.JSON(w, http.StatusOK, infoOf(sess))
}

// requireSession resolves the session cookie or answers 401 no_session.
func (s *server) requireSession(w http.ResponseWriter, r *http.Request) (session.Session, bool) {
	sess, err := session.FromRequest(s.sessions, r)
	if err == nil {
		return sess, true
	}

	msg := "sign in first"
	if errors.Is(err, session.ErrExpired) {
		msg = "the session has expired; sign in again"
	}
	reply.Error(w, http.StatusUnauthorized, "no_session", msg)
	return session.Session{}, false
}

// newCookie builds a cookie that satisfies the __Host-Http- prefix: Secure, HttpOnly,
// Path=/, no Domain; SameSite=Strict keeps it off every cross-site request.
func newCookie(name, value string, maxAge time.Duration) *http.Cookie {
	secs := int(maxAge / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   secs,
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	}
}

// deletionCookie expires a cookie. It carries the same prefix attributes as the original:
// browsers ignore a __Host- cookie without them, deletions included.
func deletionCookie(name string) *http.Cookie {
	c := newCookie(name, "", time.Second)
	c.MaxAge = -1 // net/http writes Max-Age=0
	return c
}

// logName makes a client-supplied user name safe and short for a log line.
func logName(name string) string {
	out := make([]rune, 0, 64)
	for _, c := range name {
		if len(out) == 64 {
			break
		}
		if c < ' ' || c == 0x7f {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}
