package session

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/token"
)

// fuzzHash is a real bcrypt hash (of "pw", cost 4), fixed so every fuzz worker mutates
// the same seeds.
const fuzzHash = "$2a$04$Pg6lmt019UxlAIP4yQk0n.mOpMBtGZ641KmIZ6QYJxi1CmYn2IK4m"

// FuzzParseUsers: whatever the users file says, every user it yields has a usable bcrypt
// hash, a safe name, a non-empty set of known grants without repeats, a whole-second
// lifetime within Cartesia's range that is exactly the one the line wrote, and an agent
// list that is exactly [*] (when the line wrote `*` or nothing) or exactly the ids the line
// wrote, each well-formed, unrepeated and admitted, held only by users with the agent
// grant; and the directory accepts the result.
func FuzzParseUsers(f *testing.F) {
	if _, err := bcrypt.Cost([]byte(fuzzHash)); err != nil {
		f.Fatal(err)
	}
	seeds := []string{
		"alice:" + fuzzHash + ":tts,stt:600",
		"# team\n\n  bob:" + fuzzHash + "\ncarol:" + fuzzHash + "::120",
		"dave:" + fuzzHash + ":agent:",
		"erin:" + fuzzHash + ": tts , agent :3600",
		"frank:" + fuzzHash + ":tts:2",
		// 600 + 2^55 seconds: times 1e9 it wraps around to exactly 600 s.
		"grace:" + fuzzHash + ":tts:36028797018964568",
		"heidi:" + fuzzHash + ":tts:-9223372036",
		"ivan:" + fuzzHash + ":tts:+60",
		"judy:$2a$04$short",
		"mallory:plaintext",
		"a:" + fuzzHash + "\na:" + fuzzHash,
		"x:" + fuzzHash + ":tts,tts",
		"\xff:" + fuzzHash,
		"name:" + fuzzHash + ":tts:60:extra",
		"kim:" + fuzzHash + ":agent:60:a1, b_2 ,C-3",
		"leo:" + fuzzHash + ":::*",
		"mia:" + fuzzHash + "::: * ",
		"ned:" + fuzzHash + ":tts,agent::",
		"oli:" + fuzzHash + ":::a1,,a2",
		"pam:" + fuzzHash + ":::a1,a1",
		"quin:" + fuzzHash + ":::*,a1",
		"rue:" + fuzzHash + ":::a.b",
		"uma:" + fuzzHash + ":::" + fuzzHash,
		"sam:" + fuzzHash + ":tts::a1",
		"tom:" + fuzzHash + ":agent:60:a1:extra",
	}
	for _, s := range seeds {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, file string) {
		users, err := ParseUsers(strings.NewReader(file))
		if err != nil {
			if users != nil {
				t.Fatal("ParseUsers returned users with its error")
			}
			if strings.Contains(err.Error(), fuzzHash) {
				t.Fatal("the error echoes a password hash")
			}
			return
		}
		if len(users) == 0 {
			t.Fatal("no error and no users")
		}

		lines := map[string]string{} // name -> its line, to compare max_ttl with the text
		for line := range strings.SplitSeq(file, "\n") {
			line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
			if name, _, ok := strings.Cut(line, ":"); ok {
				lines[name] = line
			}
		}
		for _, u := range users {
			if err := checkName(u.Name); err != nil {
				t.Fatalf("user %q: %v", u.Name, err)
			}
			if _, err := bcrypt.Cost(u.hash); err != nil {
				t.Fatalf("user %q has no bcrypt hash: %v", u.Name, err)
			}
			if len(u.Grants) == 0 {
				t.Fatalf("user %q has no grants", u.Name)
			}
			for i, g := range u.Grants {
				if _, err := token.ParseGrant(string(g)); err != nil ||
					slices.Contains(u.Grants[:i], g) {
					t.Fatalf("user %q has grants %v", u.Name, u.Grants)
				}
			}
			if u.MaxTTL < token.MinTTL || u.MaxTTL > token.MaxTTL ||
				u.MaxTTL%time.Second != 0 {
				t.Fatalf("user %q has max TTL %v", u.Name, u.MaxTTL)
			}
			parts := strings.Split(lines[u.Name], ":")
			if len(parts) >= 4 && parts[3] != "" {
				n, err := strconv.ParseInt(parts[3], 10, 64)
				if err != nil || time.Duration(n)*time.Second != u.MaxTTL ||
					n != int64(u.MaxTTL/time.Second) {
					t.Fatalf("user %q: max_ttl %q became %v", u.Name, parts[3], u.MaxTTL)
				}
			}
			checkAgents(t, u, parts)
		}

		if _, err := NewDirectory(users); err != nil {
			t.Fatalf("NewDirectory refused what ParseUsers accepted: %v", err)
		}
	})
}

// checkAgents holds FuzzParseUsers's agent-list invariants for u, parsed from the line
// split into parts.
func checkAgents(t *testing.T, u User, parts []string) {
	t.Helper()
	want := []string{AnyAgent}
	if len(parts) == 5 && parts[4] != "" && strings.TrimSpace(parts[4]) != AnyAgent {
		want = nil
		for f := range strings.SplitSeq(parts[4], ",") {
			want = append(want, strings.TrimSpace(f))
		}
	}
	if !slices.Equal(u.Agents, want) {
		t.Fatalf("user %q: agents field became %q, want %q", u.Name, u.Agents, want)
	}
	if u.AllowsAgent(AnyAgent) || u.AllowsAgent("") {
		t.Fatalf("user %q admits a malformed agent id", u.Name)
	}
	if slices.Equal(u.Agents, []string{AnyAgent}) {
		return
	}

	if !u.Allows(token.Agent) {
		t.Fatalf("user %q has agents %q but no agent grant", u.Name, u.Agents)
	}
	for i, id := range u.Agents {
		if !AgentID.MatchString(id) || slices.Contains(u.Agents[:i], id) || !u.AllowsAgent(id) {
			t.Fatalf("user %q has agents %q", u.Name, u.Agents)
		}
	}
}

// FuzzSessionLookup: a session id from a cookie finds a session only if the store
// issued it, whatever bytes the client sends.
func FuzzSessionLookup(f *testing.F) {
	now := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	m := NewMemory(MemoryConfig{Now: func() time.Time { return now }})
	s, err := m.Create(User{Name: "alice", Grants: token.Grants(), MaxTTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.ID)
	f.Add(s.ID + "\x00")
	f.Add(strings.ToLower(s.ID))
	f.Add(s.ID[:len(s.ID)-1])
	f.Add("")
	f.Add(fmt.Sprintf("%x", s.ID))

	f.Fuzz(func(t *testing.T, id string) {
		got, err := m.Get(id)
		if id == s.ID {
			if err != nil || got.User != "alice" {
				t.Fatalf("the issued id does not find its session: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("id %q found session %q it was never issued for", id, got.User)
		}
	})
}
