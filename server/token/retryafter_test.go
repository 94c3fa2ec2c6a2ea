package token

import (
	"net/http"
	"testing"
	"time"
)

// TestCapRetryAfterNamesAtMostFiveMinutes: whatever wait upstream names, what we relay
// is whole seconds from 0 to 300; a date becomes the seconds until it, rounded up, so
// that a client's clock plays no part; a malformed value is dropped.
func TestCapRetryAfterNamesAtMostFiveMinutes(t *testing.T) {
	now := time.Date(2026, 4, 1, 10, 0, 0, 250*int(time.Millisecond), time.UTC)
	date := func(d time.Duration) string {
		return now.Truncate(time.Second).Add(d).Format(http.TimeFormat)
	}
	tests := []struct{ in, want string }{
		{"0", "0"},
		{"7", "7"},
		{" 120 ", "120"},
		{"300", "300"},
		{"301", "300"},
		{"86400", "300"},
		{"999999999", "300"},
		{date(90 * time.Second), "90"},
		{date(5 * time.Minute), "300"},
		{date(24 * time.Hour), "300"},
		{date(10 * 365 * 24 * time.Hour), "300"},
		{date(-time.Hour), "0"},
		{date(0), "0"},
		{"Wednesday, 01-Apr-26 10:01:00 GMT", "60"},
		{"", ""},
		{"soon", ""},
		{"-1", ""},
		{"7\r\nX-Injected: 1", ""},
		{"99999999999999999999", ""},
	}
	for _, tt := range tests {
		if got := CapRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("CapRetryAfter(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if MaxRetryAfter != 5*time.Minute {
		t.Errorf("MaxRetryAfter = %v, want 5 min", MaxRetryAfter)
	}
}
