package proxy

import (
	"sync"

	"github.com/voxgate/voxgate/server/token"
)

// slots counts what each user has in flight per grant, for a concurrency cap.
//
// Limitation: the counts live in this process; several replicas each allow the full cap.
type slots struct {
	limit int

	mu   sync.Mutex
	open map[streamKey]int
}

type streamKey struct {
	user  string
	grant token.Grant
}

func newSlots(limit int) *slots {
	return &slots{limit: limit, open: map[streamKey]int{}}
}

// acquire takes one of the user's slots for grant. It reports false when all are taken;
// otherwise the caller must call release exactly once.
func (s *slots) acquire(user string, g token.Grant) (release func(), ok bool) {
	k := streamKey{user, g}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[k] >= s.limit {
		return nil, false
	}
	s.open[k]++

	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.open[k]--; s.open[k] <= 0 {
				delete(s.open, k)
			}
		})
	}, true
}

// total is how many slots are taken across all users and grants.
func (s *slots) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.open {
		n += c
	}
	return n
}

// streams counts open WebSocket relays per user and grant, for the concurrency cap, and
// files them by session, so that signing out can end them.
type streams struct {
	*slots

	mu        sync.Mutex
	bySession map[string]map[*relay]struct{}
}

func newStreams(limit int) *streams {
	return &streams{slots: newSlots(limit), bySession: map[string]map[*relay]struct{}{}}
}

// track files rl under its session until untrack.
func (s *streams) track(sessionID string, rl *relay) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.bySession[sessionID]
	if set == nil {
		set = map[*relay]struct{}{}
		s.bySession[sessionID] = set
	}
	set[rl] = struct{}{}
}

func (s *streams) untrack(sessionID string, rl *relay) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.bySession[sessionID]
	delete(set, rl)
	if len(set) == 0 {
		delete(s.bySession, sessionID)
	}
}

// relays returns the session's open relays.
func (s *streams) relays(sessionID string) []*relay {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*relay, 0, len(s.bySession[sessionID]))
	for rl := range s.bySession[sessionID] {
		out = append(out, rl)
	}
	return out
}

// EndSession closes every WebSocket that the session opened through this proxy, telling
// the browser 1008 "session ended", and reports how many there were. The sign-out
// handler calls it after deleting the session, so no new socket can open for it either.
// It returns at once; the relays finish their close handshakes on their own.
func (p *Proxy) EndSession(sessionID string) int {
	rls := p.streams.relays(sessionID)
	for _, rl := range rls {
		rl.stop(endSessionEnded)
	}
	return len(rls)
}

// OpenWebSockets reports how many WebSocket relays are open, for tests and metrics.
func (p *Proxy) OpenWebSockets() int {
	return p.streams.total()
}
