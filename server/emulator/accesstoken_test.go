package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAccessTokenIsAnHS256JWTWithRequestedClaims(t *testing.T) {
	h := newHarness(t, 0)
	r := h.do(request{path: "/access-token",
		body: `{"grants":{"tts":true,"stt":false},"expires_in":300,"note":"ignored"}`})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}

	// The response is {"token": ...} and nothing else (reference §2.2).
	var body map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 1 || body["token"] == "" {
		t.Fatalf("body %s, want only a token", r.body)
	}

	parts := strings.Split(body["token"], ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var header map[string]string
	if err := decodeSegment(parts[0], &header); err != nil {
		t.Fatal(err)
	}
	if len(header) != 2 || header["alg"] != "HS256" || !strings.HasPrefix(header["kid"], "ssid_") {
		t.Errorf("header %v, want alg HS256 and a kid", header)
	}

	var payload map[string]any
	if err := decodeSegment(parts[1], &payload); err != nil {
		t.Fatal(err)
	}
	iat := h.clock.Now().Unix()
	grants, _ := json.Marshal(payload["grants"])
	checks := []struct {
		name      string
		got, want any
	}{
		{"grants", string(grants), `{"stt":false,"tts":true}`},
		{"iat", payload["iat"], float64(iat)},
		{"exp", payload["exp"], float64(iat + 300)},
		{"iss", payload["iss"], "https://api.cartesia.ai"},
		{"claim count", len(payload), 5},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if jti, _ := payload["jti"].(string); len(jti) != 12 {
		t.Errorf("jti %q, want 12 characters", jti)
	}
}

func TestAccessTokensAreUnique(t *testing.T) {
	h := newHarness(t, 0)
	a, b := h.mint(`{"tts":true}`, 60), h.mint(`{"tts":true}`, 60)
	if a == b {
		t.Error("two mints in the same second returned the same token")
	}
}

func TestAccessTokenValidation(t *testing.T) {
	h := newHarness(t, 0)
	tests := []struct {
		name     string
		body     string
		fragment string
	}{
		{"empty body", ``, "empty body"},
		{"malformed JSON", `{"grants":`, "not valid JSON"},
		{"array body", `[]`, "JSON object"},
		{"string body", `"tts"`, "JSON object"},
		{"two values", `{} {}`, "unexpected data"},
		{"duplicate grant", `{"grants":{"tts":true,"tts":false},"expires_in":60}`,
			`duplicate key "grants.tts"`},
		{"duplicate field", `{"expires_in":60,"grants":{"tts":true},"expires_in":7200}`,
			`duplicate key "expires_in"`},
		{"grants missing", `{"expires_in":60}`, "at least one of tts, stt or agent"},
		{"grants null", `{"grants":null,"expires_in":60}`, "at least one of tts, stt or agent"},
		{"grants empty", `{"grants":{},"expires_in":60}`, "at least one of tts, stt or agent"},
		{"grants as a list", `{"grants":["tts"],"expires_in":60}`, "grants must be an object"},
		{"unknown grant", `{"grants":{"tts":true,"admin":true},"expires_in":60}`,
			`unknown grant "admin"`},
		{"grant as a string", `{"grants":{"tts":"true"},"expires_in":60}`,
			"grants.tts must be true or false"},
		{"grant as a number", `{"grants":{"stt":1},"expires_in":60}`,
			"grants.stt must be true or false"},
		{"all grants false", `{"grants":{"tts":false,"stt":false,"agent":null},"expires_in":60}`,
			"at least one grant must be true"},
		{"expires_in missing", `{"grants":{"tts":true}}`, "expires_in is required"},
		{"expires_in null", `{"grants":{"tts":true},"expires_in":null}`, "expires_in is required"},
		{"expires_in string", `{"grants":{"tts":true},"expires_in":"60"}`,
			"expires_in must be an integer"},
		{"expires_in fraction", `{"grants":{"tts":true},"expires_in":60.5}`,
			"expires_in must be an integer"},
		{"expires_in float form", `{"grants":{"tts":true},"expires_in":60.0}`,
			"expires_in must be an integer"},
		{"expires_in exponent", `{"grants":{"tts":true},"expires_in":6e1}`,
			"expires_in must be an integer"},
		{"expires_in zero", `{"grants":{"tts":true},"expires_in":0}`,
			"between 1 and 3600 seconds, got 0"},
		{"expires_in negative", `{"grants":{"tts":true},"expires_in":-1}`,
			"between 1 and 3600 seconds, got -1"},
		{"expires_in too long", `{"grants":{"tts":true},"expires_in":3601}`,
			"between 1 and 3600 seconds, got 3601"},
		{"expires_in huge", `{"grants":{"tts":true},"expires_in":99999999999999999999}`,
			"out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(request{path: "/access-token", body: tt.body})
			r.wantError(t, http.StatusBadRequest, codeInvalidRequest, tt.fragment)
		})
	}
}

func TestAccessTokenLimitsAccepted(t *testing.T) {
	h := newHarness(t, 0)
	for _, body := range []string{
		`{"grants":{"tts":true},"expires_in":1}`,
		`{"grants":{"agent":true},"expires_in":3600}`,
		`{"grants":{"tts":null,"stt":true},"expires_in":60}`,
		` {"expires_in" : 60 , "grants" : {"tts" : true}} `,
	} {
		if r := h.do(request{path: "/access-token", body: body}); r.status != http.StatusOK {
			t.Errorf("%s: status %d: %s", body, r.status, r.body)
		}
	}
}

func TestAccessTokenBodyOver16KiBIs413(t *testing.T) {
	h := newHarness(t, 0)
	body := `{"grants":{"tts":true},"expires_in":60,"pad":"` + strings.Repeat("x", 16<<10) + `"}`
	h.do(request{path: "/access-token", body: body}).
		wantError(t, http.StatusRequestEntityTooLarge, codeTooLarge, "16 KiB")
}

func TestAccessTokenCannotMintAccessTokens(t *testing.T) {
	h := newHarness(t, 0)
	token := h.mint(`{"tts":true,"stt":true,"agent":true}`, 60)
	h.do(request{path: "/access-token", headers: bearer(token),
		body: `{"grants":{"tts":true},"expires_in":60}`}).
		wantError(t, http.StatusForbidden, codeAPIKeyRequired, "API key")
}

func TestGrantsAreEnforcedOnTTS(t *testing.T) {
	h := newHarness(t, 0)
	tests := []struct {
		grants string
		status int
	}{
		{`{"tts":true}`, http.StatusOK},
		{`{"tts":true,"stt":false}`, http.StatusOK},
		{`{"stt":true}`, http.StatusForbidden},
		{`{"agent":true,"tts":false}`, http.StatusForbidden},
		{`{"stt":true,"agent":true}`, http.StatusForbidden},
	}
	for _, tt := range tests {
		token := h.mint(tt.grants, 60)
		r := h.do(request{path: "/tts/bytes", headers: bearer(token), body: smallTTS})
		if tt.status == http.StatusOK {
			if r.status != http.StatusOK {
				t.Errorf("grants %s: status %d: %s", tt.grants, r.status, r.body)
			}
			continue
		}
		r.wantError(t, http.StatusForbidden, codeInsufficientGrant, `"tts" grant`)
	}
}

func TestTokenExpiresAtExpOnTheEmulatorClock(t *testing.T) {
	h := newHarness(t, 0)
	token := h.mint(`{"tts":true}`, 60)

	h.clock.Advance(59 * time.Second)
	r := h.do(request{path: "/tts/bytes", headers: bearer(token), body: smallTTS})
	if r.status != http.StatusOK {
		t.Fatalf("one second before exp: status %d: %s", r.status, r.body)
	}

	h.clock.Advance(time.Second)
	h.do(request{path: "/tts/bytes", headers: bearer(token), body: smallTTS}).
		wantError(t, http.StatusUnauthorized, codeTokenExpired, "expired")

	// Expiry is checked before the route's own rules: an expired token is expired
	// everywhere.
	h.do(request{path: "/access-token", headers: bearer(token), body: `{}`}).
		wantError(t, http.StatusUnauthorized, codeTokenExpired, "expired")
}
