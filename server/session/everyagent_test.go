package session

import "testing"

func TestAllowsEveryAgentOnlyForTheWildcardList(t *testing.T) {
	for _, tt := range []struct {
		agents []string
		want   bool
	}{
		{[]string{AnyAgent}, true},
		{nil, false},
		{[]string{}, false},
		{[]string{"a1"}, false},
		{[]string{"a1", AnyAgent}, false},
		{[]string{AnyAgent, AnyAgent}, false},
	} {
		if got := (Session{Agents: tt.agents}).AllowsEveryAgent(); got != tt.want {
			t.Errorf("AllowsEveryAgent with %q = %v, want %v", tt.agents, got, tt.want)
		}
	}
}
