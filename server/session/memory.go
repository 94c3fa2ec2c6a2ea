package session

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// sweepEvery is how often Create also removes expired sessions, so that abandoned ones do
// not pile up without needing a background goroutine.
const sweepEvery = time.Minute

// DefaultMaxSessions bounds the memory store; a login flood meets ErrFull instead of
// exhausting memory.
const DefaultMaxSessions = 100_000

// MemoryConfig configures a Memory store. Zero values take the defaults.
type MemoryConfig struct {
	// Idle ends a session unused for this long. A proxied WebSocket that carries
	// messages counts as use: the proxy touches its session at most once a minute, at a
	// look-up every 30 s, so an Idle under two minutes could end a live call.
	Idle time.Duration
	// Absolute ends every session this long after sign-in.
	Absolute    time.Duration
	MaxSessions int
	Now         func() time.Time
}

// Memory is the in-process Store.
//
// Limitation: sessions live in this process's memory. A restart signs everyone out (the
// sockets it closed reconnect only after their user signs in again: each upgrade is
// answered 401 no_session until then), and several replicas behind one origin would each
// know only their own sessions; a shared store must implement Store for that.
type Memory struct {
	idle, absolute time.Duration
	max            int
	now            func() time.Time

	mu        sync.Mutex
	byHash    map[[32]byte]*record
	lastSweep time.Time
}

// record is what the store keeps; the id itself is not kept, only its hash.
type record struct {
	s Session
}

// NewMemory returns an empty in-memory store.
func NewMemory(cfg MemoryConfig) *Memory {
	m := &Memory{
		idle:     cfg.Idle,
		absolute: cfg.Absolute,
		max:      cfg.MaxSessions,
		now:      cfg.Now,
		byHash:   map[[32]byte]*record{},
	}
	if m.idle <= 0 {
		m.idle = DefaultIdle
	}
	if m.absolute <= 0 {
		m.absolute = DefaultAbsolute
	}
	if m.max <= 0 {
		m.max = DefaultMaxSessions
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// Create implements Store.
func (m *Memory) Create(u User) (Session, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()

	if now.Sub(m.lastSweep) >= sweepEvery || len(m.byHash) >= m.max {
		m.sweepLocked(now)
	}
	if len(m.byHash) >= m.max {
		return Session{}, ErrFull
	}

	id := NewID()
	s := Session{
		ID:             id,
		User:           u.Name,
		Grants:         slices.Clone(u.Grants),
		MaxTTL:         u.MaxTTL,
		Agents:         slices.Clone(u.Agents),
		Created:        now,
		LastSeen:       now,
		AbsoluteExpiry: now.Add(m.absolute),
	}
	s.ExpiresAt = m.expiry(s)
	m.byHash[sha256.Sum256([]byte(id))] = &record{s: s}
	return s, nil
}

// Get implements Store.
func (m *Memory) Get(id string) (Session, error) {
	return m.lookup(id, false)
}

// Touch implements Store.
func (m *Memory) Touch(id string) (Session, error) {
	return m.lookup(id, true)
}

// lookup finds a live session, removing it when it has expired.
func (m *Memory) lookup(id string, touch bool) (Session, error) {
	now := m.now()
	key := sha256.Sum256([]byte(id))
	m.mu.Lock()
	defer m.mu.Unlock()

	rec, ok := m.byHash[key]
	if !ok {
		return Session{}, ErrNotFound
	}
	if m.expiredLocked(rec.s, now) {
		delete(m.byHash, key)
		return Session{}, ErrExpired
	}

	if touch {
		rec.s.LastSeen = now
		rec.s.ExpiresAt = m.expiry(rec.s)
	}
	s := rec.s
	s.Grants = slices.Clone(s.Grants)
	s.Agents = slices.Clone(s.Agents)
	return s, nil
}

// Delete implements Store.
func (m *Memory) Delete(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.byHash, sha256.Sum256([]byte(id)))
	return nil
}

// Sweep removes every expired session now.
func (m *Memory) Sweep() {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
}

// Len reports how many sessions the store holds, expired ones not yet swept included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byHash)
}

func (m *Memory) sweepLocked(now time.Time) {
	for k, rec := range m.byHash {
		if m.expiredLocked(rec.s, now) {
			delete(m.byHash, k)
		}
	}
	m.lastSweep = now
}

// expiredLocked reports whether s is past its idle or absolute deadline. The deadline
// instant itself already counts as expired.
func (m *Memory) expiredLocked(s Session, now time.Time) bool {
	return !now.Before(s.LastSeen.Add(m.idle)) || !now.Before(s.AbsoluteExpiry)
}

// expiry is the earlier of the idle and absolute deadlines.
func (m *Memory) expiry(s Session) time.Time {
	idle := s.LastSeen.Add(m.idle)
	if idle.Before(s.AbsoluteExpiry) {
		return idle
	}
	return s.AbsoluteExpiry
}
