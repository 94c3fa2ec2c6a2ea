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

func TestParseUsersAgentLists(t *testing.T) {
	h := hashOf(t, "pw")
	long := strings.Repeat("A", 128)
	tests := []struct {
		name    string
		line    string
		want    []string
		allowed []string
		refused []string
	}{
		{"absent means any", "alice:" + h, []string{AnyAgent},
			[]string{"a1", long}, []string{AnyAgent}},
		{"absent after max_ttl means any", "alice:" + h + ":tts,agent:60",
			[]string{AnyAgent}, []string{"a1"}, nil},
		{"empty field means any", "alice:" + h + ":::", []string{AnyAgent},
			[]string{"a1"}, nil},
		{"star", "alice:" + h + ":agent:: * ", []string{AnyAgent}, []string{"x_y-Z"}, nil},
		{"star for a user without the agent grant", "alice:" + h + ":tts::*",
			[]string{AnyAgent}, nil, nil},
		{"one id", "alice:" + h + ":agent::agent_7-X", []string{"agent_7-X"},
			[]string{"agent_7-X"}, []string{"agent_7-x", "agent_7", AnyAgent, ""}},
		{"several ids, spaces trimmed", "alice:" + h + ":::a1, b2 ," + long,
			[]string{"a1", "b2", long}, []string{"a1", "b2", long}, []string{"c3", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, err := ParseUsers(strings.NewReader(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			u := users[0]
			if !slices.Equal(u.Agents, tt.want) {
				t.Errorf("agents %q, want %q", u.Agents, tt.want)
			}
			for _, id := range tt.allowed {
				if !u.AllowsAgent(id) {
					t.Errorf("agent %q refused", id)
				}
			}
			for _, id := range tt.refused {
				if u.AllowsAgent(id) {
					t.Errorf("agent %q allowed", id)
				}
			}
		})
	}
}

func TestAgentListReachesTheSession(t *testing.T) {
	h := hashOf(t, "pw")
	users, err := ParseUsers(strings.NewReader("alice:" + h + ":::a1,a2"))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMemory(MemoryConfig{})
	s, err := m.Create(users[0])
	if err != nil {
		t.Fatal(err)
	}
	users[0].Agents[0] = "changed" // the session keeps its own copy

	got, err := m.Get(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Agents, []string{"a1", "a2"}) || !got.AllowsAgent("a2") ||
		got.AllowsAgent("a3") {
		t.Errorf("session agents %q, want [a1 a2]", got.Agents)
	}
	got.Agents[0] = "a3"
	if again, _ := m.Get(s.ID); again.AllowsAgent("a3") {
		t.Error("a snapshot's agent list aliases the store's")
	}
}

func TestUserWithoutAgentListCallsNoAgent(t *testing.T) {
	u := User{Name: "alice", Grants: token.Grants()}
	if u.AllowsAgent("a1") || (Session{}).AllowsAgent("a1") {
		t.Error("an empty agent list allows an agent")
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
		{"hash in the max_ttl field", "alice:" + h + "::" + h, "max_ttl is not whole seconds"},
		{"too many fields", "alice:" + h + ":agent:60:a1:x", "line 1"},
		// A forged cost-24 hash (the salt and digest need not be real to be refused).
		{"bcrypt cost too high", "alice:$2a$24$" + h[7:], "bcrypt cost 24 is over 14"},
		{"agent id with a dot", "# c\nalice:" + h + ":agent::a1,a.b", "line 2: user \"alice\": " +
			"agents: item 2 is not an agent id"},
		{"hash in the agents field", "alice:" + h + ":::" + h, "item 1 is not an agent id"},
		{"agent id with a slash", "alice:" + h + "::60:a/b", "line 1"},
		{"agent id too long", "alice:" + h + ":::" + strings.Repeat("a", 129), "line 1"},
		{"empty agent id", "alice:" + h + ":::a1,,a2", "line 1: user \"alice\": agents: empty"},
		{"trailing comma", "alice:" + h + ":::a1,", "line 1: user \"alice\": agents: empty"},
		{"repeated agent id", "alice:" + h + ":::a1, a1", "listed twice"},
		{"star mixed with ids", "alice:" + h + ":::*,a1", "cannot be combined"},
		{"star twice", "alice:" + h + ":::*,*", "cannot be combined"},
		{"agent ids without the agent grant", "alice:" + h + ":tts::a1",
			"agent ids are listed but the agent grant is not"},
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
		u.Allows(token.STT) || !slices.Equal(u.Agents, []string{AnyAgent}) {
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
	if !slices.Equal(u.Grants, token.Grants()) || u.MaxTTL != token.MaxTTL ||
		!slices.Equal(u.Agents, []string{AnyAgent}) {
		t.Errorf("demo user policy %v %v %q, want every grant, the max TTL and any agent",
			u.Grants, u.MaxTTL, u.Agents)
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
