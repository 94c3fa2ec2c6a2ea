package session

import (
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/token"
)

func hashOf(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParseUsers(t *testing.T) {
	h := hashOf(t, "pw")
	file := strings.Join([]string{
		"# team accounts",
		"",
		"alice:" + h + ":tts,stt:600",
		"  bob:" + h,
		"carol:" + h + "::120",
		"dave:" + h + ":agent",
	}, "\n")

	users, err := ParseUsers(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name   string
		grants []token.Grant
		maxTTL time.Duration
	}{
		{"alice", []token.Grant{token.TTS, token.STT}, 600 * time.Second},
		{"bob", token.Grants(), token.MaxTTL},
		{"carol", token.Grants(), 120 * time.Second},
		{"dave", []token.Grant{token.Agent}, token.MaxTTL},
	}
	if len(users) != len(want) {
		t.Fatalf("parsed %d users, want %d", len(users), len(want))
	}
	for i, w := range want {
		u := users[i]
		if u.Name != w.name || !slices.Equal(u.Grants, w.grants) || u.MaxTTL != w.maxTTL {
			t.Errorf("user %d = %s %v %v, want %s %v %v", i, u.Name, u.Grants, u.MaxTTL,
				w.name, w.grants, w.maxTTL)
		}
	}
}

func TestParseUsersErrorsNameTheLine(t *testing.T) {
	h := hashOf(t, "pw")
	tests := []struct {
		name, file, want string
	}{
		{"no hash", "alice", "line 1"},
		{"not bcrypt", "# c\nalice:plaintext", "line 2"},
		{"unknown grant", "alice:" + h + ":tts,admin", "line 1"},
		{"repeated grant", "alice:" + h + ":tts,tts", "line 1"},
		{"ttl too long", "alice:" + h + ":tts:3601", "line 1"},
		{"ttl too short", "alice:" + h + ":tts:1", "line 1"},
		{"ttl not a number", "alice:" + h + ":tts:1h", "line 1"},
		{"too many fields", "alice:" + h + ":tts:60:x", "line 1"},
		{"bad name", "al ice:" + h, "line 1"},
		{"empty name", ":" + h, "line 1"},
		{"duplicate", "alice:" + h + "\n\nalice:" + h,
			"line 3: user \"alice\" already defined on line 1"},
		{"no users", "# nothing\n", "no users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseUsers(strings.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "$2a$") {
				t.Errorf("error %q quotes the hash", err)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	alice, err := NewUser("alice", "right", []token.Grant{token.TTS}, time.Minute, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := NewDirectory([]User{alice})
	if err != nil {
		t.Fatal(err)
	}

	if u, ok := dir.Authenticate("alice", "right"); !ok || u.Name != "alice" || !u.Allows(token.TTS) ||
		u.Allows(token.STT) {
		t.Errorf("right password refused or wrong policy: %+v %v", u, ok)
	}
	for _, c := range [][2]string{{"alice", "wrong"}, {"alice", ""}, {"mallory", "right"},
		{"", ""}, {"alice", "right" + strings.Repeat("x", 100)}} {
		if _, ok := dir.Authenticate(c[0], c[1]); ok {
			t.Errorf("Authenticate(%q, %q) succeeded", c[0], c[1])
		}
	}
	if len(dir.dummy) == 0 {
		t.Error("no dummy hash for unknown names")
	}
	if _, err := NewDirectory([]User{alice, alice}); err == nil {
		t.Error("NewDirectory accepted a duplicate user")
	}
}

func TestDemoUser(t *testing.T) {
	u, pw, err := DemoUser("demo", "", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if len(pw) < 20 {
		t.Errorf("random demo password %d chars, want a long one", len(pw))
	}
	_, pw2, _ := DemoUser("demo", "", bcrypt.MinCost)
	if pw == pw2 {
		t.Error("two random demo passwords are equal")
	}
	if !slices.Equal(u.Grants, token.Grants()) || u.MaxTTL != token.MaxTTL {
		t.Errorf("demo user policy %v %v, want every grant and the max TTL", u.Grants, u.MaxTTL)
	}

	fixed, pw3, err := DemoUser("demo", "secret", bcrypt.MinCost)
	if err != nil || pw3 != "secret" {
		t.Fatalf("DEMO_PASSWORD not used: %q %v", pw3, err)
	}
	dir, _ := NewDirectory([]User{fixed})
	if _, ok := dir.Authenticate("demo", "secret"); !ok {
		t.Error("demo user cannot sign in with its password")
	}
	if _, _, err := DemoUser("bad name", "", bcrypt.MinCost); err == nil {
		t.Error("DemoUser accepted a bad name")
	}
}
