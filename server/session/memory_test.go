package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/token"
)

func newStore(t *testing.T) (*Memory, *sectest.Clock, User) {
	t.Helper()
	clk := sectest.NewClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	m := NewMemory(MemoryConfig{Idle: time.Hour, Absolute: 12 * time.Hour, Now: clk.Now})
	u := User{Name: "alice", Grants: []token.Grant{token.TTS}, MaxTTL: time.Minute}
	return m, clk, u
}

func TestSessionIDsAreLongRandomAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 43 || seen[id] {
			t.Fatalf("id %q is short or repeated", id)
		}
		seen[id] = true
	}
	if fp := Fingerprint("x"); len(fp) != 12 || fp == "x" {
		t.Errorf("Fingerprint = %q", fp)
	}
}

func TestIdleTimeoutEndsUnusedSessions(t *testing.T) {
	m, clk, u := newStore(t)
	s, _ := m.Create(u)

	clk.Advance(59 * time.Minute)
	if _, err := m.Touch(s.ID); err != nil {
		t.Fatalf("touch within the idle window: %v", err)
	}
	clk.Advance(59 * time.Minute) // 59 min since the touch: still alive
	got, err := m.Get(s.ID)
	if err != nil {
		t.Fatalf("get 59 min after the last touch: %v", err)
	}
	if want := clk.Now().Add(time.Minute); !got.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, want)
	}

	clk.Advance(time.Minute) // exactly an hour idle
	if _, err := m.Get(s.ID); !errors.Is(err, ErrExpired) {
		t.Fatalf("get after an idle hour: %v, want ErrExpired", err)
	}
	if _, err := m.Get(s.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired session was not removed: %v", err)
	}
}

func TestGetDoesNotCountAsActivity(t *testing.T) {
	m, clk, u := newStore(t)
	s, _ := m.Create(u)
	clk.Advance(40 * time.Minute)
	_, _ = m.Get(s.ID)
	clk.Advance(20 * time.Minute)
	if _, err := m.Get(s.ID); !errors.Is(err, ErrExpired) {
		t.Errorf("Get extended the idle deadline: %v", err)
	}
}

func TestAbsoluteTimeoutEndsBusySessions(t *testing.T) {
	m, clk, u := newStore(t)
	s, _ := m.Create(u)
	if want := clk.Now().Add(12 * time.Hour); !s.AbsoluteExpiry.Equal(want) {
		t.Fatalf("AbsoluteExpiry = %v, want %v", s.AbsoluteExpiry, want)
	}

	for range 23 { // 11.5 h of activity every 30 minutes
		clk.Advance(30 * time.Minute)
		if _, err := m.Touch(s.ID); err != nil {
			t.Fatalf("busy session ended early at %v: %v", clk.Now(), err)
		}
	}
	got, _ := m.Get(s.ID)
	if !got.ExpiresAt.Equal(s.AbsoluteExpiry) {
		t.Errorf("ExpiresAt %v, want the absolute deadline %v", got.ExpiresAt, s.AbsoluteExpiry)
	}

	clk.Advance(30 * time.Minute)
	if _, err := m.Touch(s.ID); !errors.Is(err, ErrExpired) {
		t.Errorf("touch at 12 h: %v, want ErrExpired", err)
	}
}

func TestDeleteAndUnknownIDs(t *testing.T) {
	m, _, u := newStore(t)
	s, _ := m.Create(u)
	if err := m.Delete(s.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{s.ID, "", "forged", NewID()} {
		if _, err := m.Touch(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Touch(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if err := m.Delete("never-existed"); err != nil {
		t.Errorf("deleting an unknown id: %v", err)
	}
}

func TestExpiredSessionsAreSwept(t *testing.T) {
	m, clk, u := newStore(t)
	for range 5 {
		_, _ = m.Create(u)
	}
	clk.Advance(2 * time.Hour)
	live, _ := m.Create(u) // a minute has passed since the last sweep: this create sweeps
	if n := m.Len(); n != 1 {
		t.Errorf("after the sweep the store holds %d sessions, want 1", n)
	}
	if _, err := m.Get(live.ID); err != nil {
		t.Errorf("the live session was swept: %v", err)
	}
}

func TestStoreIsBounded(t *testing.T) {
	clk := sectest.NewClock(time.Now())
	m := NewMemory(MemoryConfig{MaxSessions: 2, Now: clk.Now})
	u := User{Name: "a"}
	_, _ = m.Create(u)
	_, _ = m.Create(u)
	if _, err := m.Create(u); !errors.Is(err, ErrFull) {
		t.Errorf("third session: %v, want ErrFull", err)
	}
	clk.Advance(2 * time.Hour) // both idle out; the next create makes room
	if _, err := m.Create(u); err != nil {
		t.Errorf("create after expiry: %v", err)
	}
}

func TestFromRequest(t *testing.T) {
	m, _, u := newStore(t)
	s, _ := m.Create(u)

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if _, err := FromRequest(m, r); !errors.Is(err, ErrNoCookie) {
		t.Errorf("no cookie: %v", err)
	}
	r.AddCookie(&http.Cookie{Name: CookieName, Value: s.ID})
	got, err := FromRequest(m, r)
	if err != nil || got.User != "alice" {
		t.Errorf("FromRequest = %+v, %v", got, err)
	}
}
