package api

import (
	"log/slog"
	"sync"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// A 429 from POST /access-token says the API key's rate window is spent, but not who
// spent it. One user bursting mints earns one: if that opened the global breaker, any
// account could stop every user's mints, again after every cool-down. So a 429 first
// counts against the user whose mint it answered: that user alone waits out upstream's
// Retry-After (DefaultUserCoolDown without one), on both token routes, without reaching
// upstream.
//
// A burst that spends upstream's window also earns 429s for whoever else mints in that
// second, so a second user's 429 proves nothing: one account plus one bystander would
// open the breaker for everyone. Only when 429s reach usersForAccountWide (three)
// different users within accountWideWindow does it look like the account as a whole,
// and then the global breaker opens as for a 402. Each user also has at most
// maxMintsInFlight mints upstream at once (see mintsInFlight), and the server-wide
// mint rate (Config.MintLimitTotal) keeps the server itself from bursting far past what
// upstream allows.
//
// Limitation: what one account's burst cannot do alone, it can with two bystanders whose
// mints land in the second its burst spends upstream's window (or with two more
// accounts): the breaker then opens for everyone, for upstream's Retry-After or
// DefaultQuotaCoolDown. MintLimitTotal set below upstream's own rate is what keeps
// bursts from earning 429s at all.

// usersForAccountWide is how many different users must earn a 429 within
// accountWideWindow before the account counts as limited: one more than a burst and the
// one bystander that happened to mint in the same second.
const usersForAccountWide = 3

// accountWideWindow is how close together the users' 429s must come to count as the
// account's limit rather than one user's burst. Short, because every second of it is a
// second in which a burst's coinciding bystanders add up; upstream windows that last
// longer send a Retry-After, which keeps each user's own cool-down going meanwhile.
const accountWideWindow = 10 * time.Second

// rateLimited is one upstream 429: the user whose mint it answered, and when.
type rateLimited struct {
	user string
	at   time.Time
}

// coolDowns holds the per-user cool-downs after upstream 429s and decides which 429s are
// account-wide. It is safe for concurrent use.
type coolDowns struct {
	now func() time.Time
	log *slog.Logger

	mu sync.Mutex
	// until maps a user to the end of their cool-down. The table is bounded like the
	// rate limiters'; a user evicted early merely reaches upstream once more.
	until *lru[time.Time]
	// recent holds the latest 429 of each of the last usersForAccountWide different
	// users, newest first: all that decides whether the next 429 makes enough users.
	recent []rateLimited
}

func newCoolDowns(now func() time.Time, log *slog.Logger) *coolDowns {
	return &coolDowns{now: now, log: log, until: newLRU[time.Time](maxLimiterKeys)}
}

// waiting reports whether user is cooling down, and for how long still.
func (c *coolDowns) waiting(user string) (time.Duration, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()

	c.until.dropOlder(now.Add(-MaxQuotaCoolDown))
	until, ok := c.until.get(user, now)
	if !ok || !now.Before(until) {
		return 0, false
	}
	return until.Sub(now), true
}

// accountWide takes upstream's 429 to one of user's mints. It reports true when
// usersForAccountWide-1 other users got a 429 within accountWideWindow: the caller then
// opens the global breaker. Otherwise it cools user down for the delay upstream named,
// or DefaultUserCoolDown (see coolDownFor), and logs one user_cool_down event.
func (c *coolDowns) accountWide(user string, grant token.Grant, ue *token.UpstreamError) bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()

	others := 0
	kept := append(make([]rateLimited, 0, usersForAccountWide), rateLimited{user, now})
	for _, r := range c.recent {
		if r.user == user || now.Sub(r.at) >= accountWideWindow {
			continue
		}
		others++
		if len(kept) < usersForAccountWide {
			kept = append(kept, r)
		}
	}
	c.recent = kept
	if others+1 >= usersForAccountWide {
		return true
	}

	coolDown := coolDownFor(ue.RetryAfter, now, DefaultUserCoolDown)
	c.until.put(user, now.Add(coolDown), now)
	c.log.Warn("user_cool_down", "user", user, "grant", string(grant),
		"upstream_status", ue.Status, "error_code", ue.Code, "request_id", ue.RequestID,
		"cool_down_s", int(coolDown/time.Second))
	return false
}
