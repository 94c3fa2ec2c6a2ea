package api

import (
	"fmt"
	"testing"
	"time"
)

func TestFullLimiterTableEvictsTheLeastRecentKeyInsteadOfRefusing(t *testing.T) {
	now := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	l := newLimiter(RateLimit{Every: time.Minute, Burst: 2}, func() time.Time { return now }, 3)

	for i := range 3 {
		l.allow(fmt.Sprintf("k%d", i))
	}
	l.allow("k0") // k0 is now the most recent; k1 the least

	if ok, _ := l.allow("new"); !ok {
		t.Fatal("a new key was refused because the table was full of active keys")
	}
	if n := l.size(); n != 3 {
		t.Errorf("table holds %d keys, want the cap of 3", n)
	}

	// k0 kept its bucket (one event left of two); k1 was evicted and starts afresh.
	l.allow("k0")
	if ok, _ := l.allow("k0"); ok {
		t.Error("k0's bucket was reset: the most recently used key was evicted")
	}
	l.allow("k1")
	if ok, _ := l.allow("k1"); !ok {
		t.Error("k1 should have been evicted and come back with a full bucket")
	}
}

func TestIdleBucketsAreDropped(t *testing.T) {
	now := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	l := newLimiter(RateLimit{Every: time.Second, Burst: 5}, func() time.Time { return now }, 100)
	for i := range 10 {
		l.allow(fmt.Sprintf("k%d", i))
	}
	now = now.Add(5 * time.Second) // every bucket is full again
	l.allow("fresh")
	if n := l.size(); n != 1 {
		t.Errorf("table holds %d keys after they all went idle, want 1", n)
	}
}

func TestAddressKeyGroupsIPv6By64(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.7:5000", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:443", "2001:db8:1:3::/64"},
		{"[::ffff:198.51.100.1]:80", "198.51.100.1"},
		{"[::1]:80", "::/64"},
		{"not-an-address", "not-an-address"},
	}
	for _, tt := range tests {
		if got := addressKey(tt.remote); got != tt.want {
			t.Errorf("addressKey(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}
