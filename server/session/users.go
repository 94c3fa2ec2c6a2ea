package session

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/token"
)

// maxPasswordLen is bcrypt's input limit; longer passwords would be silently truncated by
// some implementations, so they are refused outright.
const maxPasswordLen = 72

// AnyAgent, as the whole agent list, lets a user call every well-formed agent id.
const AnyAgent = "*"

// AgentID is what an agent id must look like, in the users file and before it becomes part
// of an upstream path: no slash, dot, percent sign or anything else that could change the
// path's meaning. Package proxy checks request paths against this same pattern.
var AgentID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// User is one account: a name, a bcrypt hash, the grants it may mint, the longest token
// lifetime it may ask for and the agent ids the proxy lets it call.
type User struct {
	Name   string
	Grants []token.Grant
	MaxTTL time.Duration
	// Agents lists the agent ids the user may call, or is exactly [AnyAgent]. Empty lets
	// the user call no agent at all: a User built without a policy fails closed.
	Agents []string
	hash   []byte
}

// Allows reports whether the user may mint tokens for g.
func (u User) Allows(g token.Grant) bool { return slices.Contains(u.Grants, g) }

// AllowsAgent reports whether id is a well-formed agent id (see AgentID) that the user's
// agent list admits. It does not check the agent grant; see Allows.
func (u User) AllowsAgent(id string) bool { return agentAllowed(u.Agents, id) }

// agentAllowed is the agent-list check shared by User and Session. The form is checked
// here too, so that "*" or a malformed id is never admitted by a caller that forgot to.
func agentAllowed(agents []string, id string) bool {
	if !AgentID.MatchString(id) {
		return false
	}
	return isAnyAgent(agents) || slices.Contains(agents, id)
}

// isAnyAgent reports whether an agent list is exactly [AnyAgent].
func isAnyAgent(agents []string) bool { return len(agents) == 1 && agents[0] == AnyAgent }

// anyAgent is a fresh [AnyAgent] list, so that no two users share a backing array.
func anyAgent() []string { return []string{AnyAgent} }

// ParseUsers reads a users file: one `name:bcrypt-hash[:grants[:max_ttl[:agents]]]` per
// line, where grants is a comma-separated subset of tts,stt,agent (empty: all three),
// max_ttl is whole seconds from 2 to 3600 (empty: 3600) and agents is a comma-separated
// list of agent ids matching AgentID, or `*` for any (empty: `*`). Blank lines and lines
// starting with # are skipped. Errors name the line and never quote the hash; a name that
// appears twice is an error.
func ParseUsers(r io.Reader) ([]User, error) {
	var users []User
	seen := map[string]int{}
	sc := bufio.NewScanner(r)

	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}

		u, err := parseUserLine(line)
		if err != nil {
			return nil, fmt.Errorf("session: users file line %d: %w", n, err)
		}
		if first, dup := seen[u.Name]; dup {
			return nil, fmt.Errorf("session: users file line %d: user %q already defined on line %d",
				n, u.Name, first)
		}
		seen[u.Name] = n
		users = append(users, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("session: read users file: %w", err)
	}
	if len(users) == 0 {
		return nil, errors.New("session: users file defines no users")
	}
	return users, nil
}

// LoadUsersFile parses the users file at path.
func LoadUsersFile(path string) ([]User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("session: open users file: %w", err)
	}
	defer f.Close()
	return ParseUsers(f)
}

// parseUserLine parses one non-comment line. Error texts never echo the hash.
func parseUserLine(line string) (User, error) {
	parts := strings.Split(line, ":")
	if len(parts) < 2 || len(parts) > 5 {
		return User{}, errors.New("want name:bcrypt-hash[:grants[:max_ttl[:agents]]]")
	}

	// The name is not echoed: a line that lacks it starts with the hash (found by
	// FuzzParseUsers), and the error names the line anyway.
	name := parts[0]
	if err := checkName(name); err != nil {
		return User{}, errors.New("the first field is not a user name: 1 to 64 letters, " +
			"digits and . _ @ - +")
	}

	hash := []byte(parts[1])
	cost, err := bcrypt.Cost(hash)
	if err != nil {
		return User{}, fmt.Errorf("user %q: the second field is not a bcrypt hash", name)
	}
	if cost > MaxBcryptCost {
		return User{}, fmt.Errorf("user %q: bcrypt cost %d is over %d", name, cost, MaxBcryptCost)
	}

	u := User{Name: name, Grants: token.Grants(), MaxTTL: token.MaxTTL, Agents: anyAgent(),
		hash: hash}
	if len(parts) >= 3 && parts[2] != "" {
		grants, err := parseGrants(parts[2])
		if err != nil {
			return User{}, fmt.Errorf("user %q: %w", name, err)
		}
		u.Grants = grants
	}
	if len(parts) >= 4 && parts[3] != "" {
		// The range is checked on the seconds, before converting: a huge count times
		// time.Second wraps around and could land inside the range (found by
		// FuzzParseUsers).
		secs, err := strconv.Atoi(parts[3])
		ttl := time.Duration(secs) * time.Second
		if err != nil || secs < int(token.MinTTL/time.Second) ||
			secs > int(token.MaxTTL/time.Second) {
			// The field is not quoted: a misplaced hash lands here (found by FuzzParseUsers).
			return User{}, fmt.Errorf("user %q: max_ttl is not whole seconds from %d to %d",
				name, int(token.MinTTL.Seconds()), int(token.MaxTTL.Seconds()))
		}
		u.MaxTTL = ttl
	}
	if len(parts) == 5 && parts[4] != "" {
		agents, err := parseAgents(parts[4])
		if err != nil {
			return User{}, fmt.Errorf("user %q: %w", name, err)
		}
		// A list for a user who cannot mint agent tokens would never be consulted; it is
		// almost certainly a grants field that forgot "agent", so say so.
		if !isAnyAgent(agents) && !u.Allows(token.Agent) {
			return User{}, fmt.Errorf("user %q: agent ids are listed but the agent grant "+
				"is not", name)
		}
		u.Agents = agents
	}
	return u, nil
}

// parseAgents parses "a1,a2" or "*" into an agent list, refusing empty items, ids that do
// not match AgentID, repeats, and "*" mixed with ids (which would silently mean any).
func parseAgents(s string) ([]string, error) {
	var out []string
	for i, f := range strings.Split(s, ",") {
		id := strings.TrimSpace(f)
		switch {
		case id == AnyAgent && strings.TrimSpace(s) == AnyAgent:
			return anyAgent(), nil
		case id == AnyAgent:
			return nil, errors.New("agents: * means any agent and cannot be combined with ids")
		case id == "":
			return nil, errors.New("agents: empty agent id in the list")
		case !AgentID.MatchString(id):
			// Not quoted: a misplaced field could be the hash, and the position is enough.
			return nil, fmt.Errorf("agents: item %d is not an agent id: 1 to 128 letters, "+
				"digits, '_' or '-'", i+1)
		case slices.Contains(out, id):
			return nil, fmt.Errorf("agents: agent id %q listed twice", id)
		}
		out = append(out, id)
	}
	return out, nil
}

// checkName keeps names to a conservative alphabet, so they are safe in logs and JSON.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("user name must be 1 to 64 characters")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("._@-+", r)
		if !ok {
			return fmt.Errorf("user name %q may only hold letters, digits and . _ @ - +", name)
		}
	}
	return nil
}

// parseGrants parses "tts,stt" into grants, refusing unknown and repeated ones.
func parseGrants(s string) ([]token.Grant, error) {
	var out []token.Grant
	for _, f := range strings.Split(s, ",") {
		g, err := token.ParseGrant(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, g) {
			return nil, fmt.Errorf("grant %q listed twice", g)
		}
		out = append(out, g)
	}
	return out, nil
}

// DemoUser builds the embedded default account with every grant. An empty password is
// replaced by a random one, which is returned so that main can print it once; cost is the
// bcrypt cost (bcrypt.DefaultCost in production, bcrypt.MinCost in tests).
func DemoUser(name, password string, cost int) (User, string, error) {
	if err := checkName(name); err != nil {
		return User{}, "", fmt.Errorf("session: demo user: %w", err)
	}
	if password == "" {
		password = rand.Text()
	}
	if len(password) > maxPasswordLen {
		return User{}, "", fmt.Errorf("session: demo password is over %d bytes", maxPasswordLen)
	}

	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return User{}, "", fmt.Errorf("session: hash demo password: %w", err)
	}
	return User{Name: name, Grants: token.Grants(), MaxTTL: token.MaxTTL, Agents: anyAgent(),
		hash: hash}, password, nil
}

// NewUser builds an account from a password, for programs and tests that have no users
// file. The account may call any agent id (AnyAgent).
func NewUser(name, password string, grants []token.Grant, maxTTL time.Duration,
	cost int) (User, error) {
	if err := checkName(name); err != nil {
		return User{}, fmt.Errorf("session: new user: %w", err)
	}
	if maxTTL < token.MinTTL || maxTTL > token.MaxTTL {
		return User{}, fmt.Errorf("session: new user %q: max TTL %v out of range", name, maxTTL)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return User{}, fmt.Errorf("session: new user %q: hash password: %w", name, err)
	}
	return User{Name: name, Grants: slices.Clone(grants), MaxTTL: maxTTL, Agents: anyAgent(),
		hash: hash}, nil
}

// Directory answers "who is this?" for sign-in. It is read-only after construction and
// safe for concurrent use.
type Directory struct {
	users map[string]User
	// dummy is compared against when the name is unknown, so that an unknown user costs
	// the same bcrypt work as a wrong password and timing does not reveal which names exist.
	dummy []byte
}

// MaxBcryptCost is the highest bcrypt cost a users file may use. Every sign-in, and the
// dummy comparison that keeps unknown names as slow as known ones, runs at the file's
// highest cost: cost 24 would take hours per attempt and hang start-up (found by
// FuzzParseUsers). 14 is already about a second on one core.
const MaxBcryptCost = 14

// NewDirectory indexes users by name; a name that appears twice is an error.
func NewDirectory(users []User) (*Directory, error) {
	d := &Directory{users: make(map[string]User, len(users))}
	cost := bcrypt.MinCost

	for _, u := range users {
		if _, dup := d.users[u.Name]; dup {
			return nil, fmt.Errorf("session: user %q defined twice", u.Name)
		}
		if c, err := bcrypt.Cost(u.hash); err != nil || c > MaxBcryptCost {
			return nil, fmt.Errorf("session: user %q has no usable password hash", u.Name)
		} else if c > cost {
			cost = c
		}
		d.users[u.Name] = u
	}

	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, fmt.Errorf("session: make dummy hash: %w", err)
	}
	d.dummy = dummy
	return d, nil
}

// Authenticate checks a name and password. It does one bcrypt comparison whether or not
// the name exists, and reports only success or failure.
func (d *Directory) Authenticate(name, password string) (User, bool) {
	u, known := d.users[name]
	hash := d.dummy
	if known {
		hash = u.hash
	}

	// bcrypt compares in constant time; the dummy keeps the work equal for unknown names.
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if err != nil || !known || len(password) > maxPasswordLen {
		return User{}, false
	}
	return u, true
}

// Lookup returns the account named name.
func (d *Directory) Lookup(name string) (User, bool) {
	u, ok := d.users[name]
	return u, ok
}
