package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// CookieName is the session cookie. The __Host-Http- prefix makes browsers refuse it
// unless it is Secure, HttpOnly, Path=/ and has no Domain.
const CookieName = "__Host-Http-vg_session"

// Default timeouts, enforced by the store whatever the cookie says.
const (
	// DefaultIdle ends a session nobody has used for an hour.
	DefaultIdle = time.Hour
	// DefaultAbsolute ends every session twelve hours after sign-in, however busy.
	DefaultAbsolute = 12 * time.Hour
)

// Errors from Store methods and FromRequest.
var (
	ErrNoCookie = errors.New("session: no session cookie")
	ErrNotFound = errors.New("session: unknown session")
	ErrExpired  = errors.New("session: session expired")
	ErrFull     = errors.New("session: too many live sessions")
)

// Session is a snapshot of one signed-in user's session.
type Session struct {
	// ID is the secret that the session cookie carries. Never log it; use Fingerprint.
	ID     string
	User   string
	Grants []token.Grant
	MaxTTL time.Duration
	// Agents is the user's agent list at sign-in (see User.Agents).
	Agents   []string
	Created  time.Time
	LastSeen time.Time
	// ExpiresAt is when the session ends if it is not used again: the earlier of the
	// idle deadline and the absolute deadline.
	ExpiresAt time.Time
	// AbsoluteExpiry is when the session ends however busy it is.
	AbsoluteExpiry time.Time
}

// Allows reports whether the session's user may mint tokens for g.
func (s Session) Allows(g token.Grant) bool { return slices.Contains(s.Grants, g) }

// AllowsAgent reports whether the session's user may call agent id (see User.AllowsAgent).
func (s Session) AllowsAgent(id string) bool { return agentAllowed(s.Agents, id) }

// AllowsEveryAgent reports whether the session's agent list is exactly [AnyAgent]: no
// agent id is off limits, so nothing is left that only the proxy could enforce.
func (s Session) AllowsEveryAgent() bool { return isAnyAgent(s.Agents) }

// Store keeps sessions server-side. Implementations enforce the idle and absolute
// timeouts in Get and Touch: an expired session is reported as ErrExpired and removed.
type Store interface {
	// Create starts a session for u under a fresh random id.
	Create(u User) (Session, error)
	// Get returns a live session without counting as activity.
	Get(id string) (Session, error)
	// Touch records activity on a live session and returns the updated snapshot.
	Touch(id string) (Session, error)
	// Delete ends a session; deleting an unknown id is not an error.
	Delete(id string) error
}

// NewID returns 32 bytes from crypto/rand, base64url-encoded without padding (43 chars).
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error; it crashes instead.
	return base64.RawURLEncoding.EncodeToString(b)
}

// Fingerprint is a short, one-way stand-in for a session id, for logs.
func Fingerprint(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

// FromRequest finds the live session named by r's session cookie and records activity.
// Errors are ErrNoCookie, ErrNotFound or ErrExpired.
func FromRequest(st Store, r *http.Request) (Session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return Session{}, ErrNoCookie
	}
	return st.Touch(c.Value)
}
