package token

import "fmt"

// Grant is one Cartesia capability an access token can carry. voxgate mints one token per
// grant: a leaked TTS token cannot transcribe, and each grant expires on its own.
type Grant string

// The grants Cartesia's POST /access-token knows.
const (
	TTS   Grant = "tts"
	STT   Grant = "stt"
	Agent Grant = "agent"
)

// Grants lists every grant in a stable order.
func Grants() []Grant { return []Grant{TTS, STT, Agent} }

// ParseGrant accepts exactly "tts", "stt" or "agent".
func ParseGrant(s string) (Grant, error) {
	for _, g := range Grants() {
		if string(g) == s {
			return g, nil
		}
	}
	return "", fmt.Errorf("token: unknown grant %q (want tts, stt or agent)", truncate(s, 32))
}

// truncate shortens client-supplied text before it goes into an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
