//go:build !js

package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// socketJS defines, in the page, one round trip per socket kind: __open[kind]() opens a
// socket and __round[kind](socket, input) resolves with what came back (base64 audio for
// tts, the final transcript for stt).
const socketJS = `(() => {
	const b64 = (chunks) => {
		let s = "";
		for (const c of chunks) {
			for (let i = 0; i < c.length; i += 0x8000) {
				s += String.fromCharCode.apply(null, c.subarray(i, i + 0x8000));
			}
		}
		return btoa(s);
	};
	globalThis.__open = {
		tts: () => voxgateDemo.client.tts.websocket(),
		stt: () => voxgateDemo.client.stt.websocket({ model: "ink-whisper", encoding: "pcm_s16le",
			sample_rate: 16000, language: "en" }),
	};
	globalThis.__round = {
		tts: async (socket, text) => {
			const ctx = socket.context({ model_id: "sonic-3", language: "en",
				voice: { mode: "id", id: "6ccbfb76-1fc6-48f7-b71d-91ac6298247b" },
				output_format: { container: "raw", encoding: "pcm_s16le", sample_rate: 16000 } });
			await ctx.end(text);
			const chunks = [];
			for await (const event of ctx) if (event.type === "chunk") chunks.push(event.audio);
			return b64(chunks);
		},
		stt: async (socket, audio) => {
			const bytes = Uint8Array.from(atob(audio), (c) => c.charCodeAt(0));
			for (let i = 0; i < bytes.length; i += 3200) await socket.send(bytes.subarray(i, i + 3200));
			await socket.finalize();
			const events = socket[Symbol.asyncIterator]();
			// The emulator answers finalize with flush_done and then the final transcript
			// (or finalizes on its own after the trailing silence).
			for (;;) {
				const { value, done } = await events.next();
				if (done) return "";
				if (value.type === "transcript" && value.isFinal && value.text.trim() !== "") {
					return value.text.trim();
				}
			}
		},
	};
	return true;
})()`

// freeLoopbackAddr returns a loopback address with a port that was free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// cookieKeyFile writes a random cookie key, so that two server processes share it.
func cookieKeyFile(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cookie.key")
	if err := os.WriteFile(path, key, 0o600); err != nil {
		t.Fatalf("write the cookie key: %v", err)
	}
	return path
}

// sttInput is 16 kHz pcm_s16le speech of text (tone code) with silence around it, base64.
func sttInput(t *testing.T, text string) string {
	t.Helper()
	samples := append(make([]float32, 8000), tonecode.Encode(text, 16000)...)
	samples = append(samples, make([]float32, 8000)...)
	raw, err := audio.Encode(audio.S16LE, samples)
	if err != nil {
		t.Fatalf("encode the stt input: %v", err)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// roundTrip runs one round trip on the page's socket __socket and checks the result.
func (p *page) roundTrip(kind, text string) {
	p.t.Helper()
	input := text
	if kind == "stt" {
		input = sttInput(p.t, text)
	}
	got := eval[string](p.b, kind+" round trip", fmt.Sprintf(`__round[%q](__socket, %q)`, kind, input))
	if kind == "tts" {
		format := outputFormat{Container: "raw", Encoding: "pcm_s16le", SampleRate: 16000}
		got = strings.Join(decodeFrames(p.t, decodeBase64(p.t, got), audio.S16LE, format.SampleRate), "")
	}
	if got != text {
		p.t.Fatalf("%s round trip: got %q, want %q", kind, got, text)
	}
}

// TestB09B10B12SocketsReconnectAfterServerRestart holds a TTS and an STT socket open while
// the server restarts on the same address with the same cookie key. The restart closes
// the socket. Sessions live in the server's memory, so the session is gone too: the
// socket's reconnect() checks the token afresh instead of replaying anything captured
// (B09), asks the server once, learns that the session ended and says so (sessionend,
// code no_session) instead of retrying in a loop (B10). After signing in again,
// reconnect() opens a working socket with a token minted by the new process (B12: a
// token fetched at start-up is never reused for a new socket).
func TestB09B10B12SocketsReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"tts", "stt"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			key := cookieKeyFile(t)
			s := startServerAt(t, freeLoopbackAddr(t), "e2e-"+randomHex(t, 12), "COOKIE_KEY_FILE="+key)
			p := openSeamedPage(t, s, "/", clockStart{})
			p.quickSignIn()
			eval[bool](p.b, "define the round trips", socketJS)
			eval[bool](p.b, "open the socket", fmt.Sprintf(`__open[%q]().then((socket) => {
				globalThis.__socket = socket;
				globalThis.__closedInfo = null;
				socket.closed.then((info) => { globalThis.__closedInfo = info; });
				return true;
			})`, kind))
			p.roundTrip(kind, "Before the restart.")
			cookies := p.b.cookieValues(s.URL)

			s2 := restart(t, s, "COOKIE_KEY_FILE="+key)
			p.s = s2
			p.b.waitFor("the restart closes the socket", `__closedInfo !== null`, stepTimeout)

			before := p.tokenRequests("")
			failed := eval[speech](p.b, "reconnect without a session", `__socket.reconnect().then(
				() => ({ ok: true, code: "" }), (err) => ({ ok: false, code: String(err.code) }))`)
			if failed.OK || failed.Code != "no_session" {
				t.Errorf("reconnect after the restart: %+v, want code no_session", failed)
			}
			p.quietFor(2*time.Second, 0, "after the failed reconnect")
			if n := p.tokenRequests("") - before; n > 1 {
				t.Errorf("%d token requests for one reconnect without a session, want at most 1", n)
			}
			if ends := p.events("sessionend"); len(ends) != 1 {
				t.Errorf("sessionend events %s, want exactly one", eventTypes(ends))
			}

			p.b.waitFor("the page offers sign-in", `document.body.dataset.app === "signed-out"`,
				stepTimeout)
			p.quickSignIn()
			mark := s2.Mark()
			eval[bool](p.b, "reconnect", `__socket.reconnect().then((next) => {
				if (next) globalThis.__socket = next;
				return true;
			})`)
			p.roundTrip(kind, "After the restart.")
			if n := mints(s2, mark, kind); n != 1 {
				t.Errorf("%d %s mints by the new server for the reconnect, want 1", n, kind)
			}
			cookies = append(cookies, p.b.cookieValues(s2.URL)...)
			p.finish(s2, "restart-"+kind)
			assertNoSecrets(t, s, cookies)
		})
	}
}

// TestB03B04StreamEndedBySignOutIsReported signs the user out elsewhere while a TTS socket
// is open. The server ends the session's sockets with 1008 "session ended"; the client
// reports that as a streamend event of kind "session" (distinct from a network failure),
// and refreshing a token while a socket is open does not disturb it (B03).
func TestB03B04StreamEndedBySignOutIsReported(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openSeamedPage(t, s, "/", clockStart{})
	p.quickSignIn()
	eval[bool](p.b, "define the round trips", socketJS)
	eval[bool](p.b, "open the socket", `__open.tts().then((socket) => {
		globalThis.__socket = socket;
		globalThis.__closedInfo = null;
		socket.closed.then((info) => { globalThis.__closedInfo = info; });
		return true;
	})`)
	p.roundTrip("tts", "First on this socket.")

	// A refresh while the socket is open leaves it open and working (B03).
	eval[bool](p.b, "refresh tts", `voxgateDemo.client.tokens.refresh("tts").then(() => true)`)
	p.roundTrip("tts", "Same socket after a refresh.")

	p.signOutElsewhere()
	p.b.waitFor("the socket closes", `__closedInfo !== null`, stepTimeout)
	closed := eval[struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}](p.b, "read the close", `__closedInfo`)
	if closed.Code != 1008 || closed.Reason != "session ended" {
		t.Errorf("the socket closed with %+v, want 1008 session ended", closed)
	}
	p.b.waitFor("a streamend event", `__events.some((e) => e.type === "streamend")`, stepTimeout)
	ends := p.events("streamend")
	if len(ends) != 1 || ends[0].Kind != "session" || ends[0].Grant != "tts" {
		t.Errorf("streamend events %s, want one for tts of kind session", eventTypes(ends))
	}
	p.finish(s, "streamend")
}
