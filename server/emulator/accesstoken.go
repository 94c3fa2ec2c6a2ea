package emulator

import (
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Limits of POST /access-token.
const (
	// maxTokenBody is far above any real token request (well under 100 bytes).
	maxTokenBody = 16 << 10
	// maxTokenTTL is Cartesia's documented maximum expires_in (reference §2.1).
	maxTokenTTL = 3600
)

// accessToken mints an access token: POST /access-token, API key only.
//
// Where Cartesia's behaviour is undocumented (reference, open question 1) the emulator is
// strict, so that a client bug shows up here rather than against the real API:
//   - expires_in is required and must be a JSON integer from 1 to 3600;
//   - grants must be an object of known names (tts, stt, agent) with boolean values
//     (null counts as false, as the SDK types allow) and at least one true;
//   - unknown top-level fields are ignored, like on the TTS routes.
func (e *Emulator) accessToken(c *call) {
	body, ok := c.readBody(maxTokenBody)
	if !ok {
		return
	}
	req, err := parseObject(body)
	if err != nil {
		c.failWith(err)
		return
	}

	g, err := parseGrants(req)
	if err != nil {
		c.failWith(err)
		return
	}
	ttl, err := parseExpiresIn(req)
	if err != nil {
		c.failWith(err)
		return
	}

	token, merr := e.tokens.mint(g, e.now(), time.Duration(ttl)*time.Second)
	if merr != nil {
		c.fail(http.StatusInternalServerError, codeInternal, "Internal error",
			"the emulator could not mint a token")
		return
	}
	c.logAttrs = append(c.logAttrs, slog.String("grants", g.String()),
		slog.Int64("expires_in", ttl))
	c.writeJSON(http.StatusOK, struct {
		Token string `json:"token"`
	}{token})
}

func parseGrants(req object) (grants, *apiError) {
	obj, present, err := req.object("grants")
	if err != nil {
		return grants{}, err
	}
	if !present || len(obj.fields) == 0 {
		return grants{}, badRequest("grants must name at least one of tts, stt or agent " +
			`with the value true, for example {"grants":{"tts":true}}`)
	}

	var g grants
	names := make([]string, 0, len(obj.fields))
	for name := range obj.fields {
		names = append(names, name)
	}
	sort.Strings(names) // report the same unknown name every time

	for _, name := range names {
		var slot **bool
		switch name {
		case grantTTS:
			slot = &g.TTS
		case grantSTT:
			slot = &g.STT
		case grantAgent:
			slot = &g.Agent
		default:
			return grants{}, badRequest("unknown grant %q; the grants are tts, stt and agent",
				truncate(name, 40))
		}
		v, present, err := obj.boolean(name)
		if err != nil {
			return grants{}, err
		}
		if present {
			*slot = &v
		}
	}

	if !g.allows(grantTTS) && !g.allows(grantSTT) && !g.allows(grantAgent) {
		return grants{}, badRequest("at least one grant must be true; a token without " +
			"grants could not call anything")
	}
	return g, nil
}

func parseExpiresIn(req object) (int64, *apiError) {
	ttl, present, err := req.integer("expires_in")
	switch {
	case err != nil:
		return 0, badRequest("%s (whole seconds, 1 to %d)", err.message, maxTokenTTL)
	case !present:
		return 0, badRequest("expires_in is required: the token lifetime in seconds, 1 to %d",
			maxTokenTTL)
	case ttl < 1 || ttl > maxTokenTTL:
		return 0, badRequest("expires_in must be between 1 and %d seconds, got %d",
			maxTokenTTL, ttl)
	}
	return ttl, nil
}

// String lists the true grants, for logs.
func (g grants) String() string {
	var names []string
	for _, n := range []string{grantTTS, grantSTT, grantAgent} {
		if g.allows(n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}
