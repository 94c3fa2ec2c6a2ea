//go:build js && wasm

package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/wasm/cartesia"
	"github.com/voxgate/voxgate/wasm/jsx"
)

// fakeSocketJS is a minimal browser WebSocket for Node (which has none): events are
// dispatched as tasks like a browser does; FakeWS.refuse makes every open fail the way
// browsers report a refused upgrade (error, then close 1006); a client close is answered
// with the close FakeWS.answer names, or the same code and reason.
const fakeSocketJS = `(() => {
  class FakeWS {
    constructor(url) {
      this.url = url; this.readyState = 0; this.binaryType = "blob";
      this.sent = []; this.closeCalls = [];
      FakeWS.instances.push(this);
      if (FakeWS.refuse) {
        this.fire("error", {}, () => true);
        this.serverClose(1006, "", false);
      } else {
        this.fire("open", {}, () => this.readyState === 0 && (this.readyState = 1));
      }
    }
    fire(name, ev, ok) {
      setTimeout(() => { if ((!ok || ok()) && this["on" + name]) this["on" + name](ev); }, 0);
    }
    serverText(s) { this.fire("message", {data: s}); }
    serverClose(code, reason, wasClean) {
      this.fire("close", {code, reason, wasClean},
        () => this.readyState !== 3 && (this.readyState = 3));
    }
    send(data) { if (this.readyState === 1) this.sent.push(String(data)); }
    close(code, reason) {
      if (code !== 1000 && (code < 3000 || code > 4999)) {
        throw new DOMException("code refused", "InvalidAccessError");
      }
      this.closeCalls.push({code, reason});
      if (this.readyState >= 2) return;
      this.readyState = 2;
      const a = FakeWS.answer || {code, reason};
      this.serverClose(a.code, a.reason, true);
    }
  }
  FakeWS.instances = [];
  FakeWS.refuse = false;
  FakeWS.answer = null;
  return FakeWS;
})()`

// wsFakeInstall installs the fake as globalThis.WebSocket, and a page origin, for one test.
func wsFakeInstall(t *testing.T) safejs.Value {
	t.Helper()
	global := safejs.Global()
	class, err := global.Call("eval", fakeSocketJS)
	if err != nil {
		t.Fatalf("eval fake WebSocket: %v", err)
	}
	for name, v := range map[string]any{"WebSocket": class,
		"location": map[string]any{"origin": "http://127.0.0.1:9"}} {
		old, _ := global.Get(name)
		if err := global.Set(name, v); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if old.IsUndefined() {
				_ = global.Delete(name)
			} else {
				_ = global.Set(name, old)
			}
		})
	}
	return class
}

// wsFakeNth waits (polling, with a deadline) until the page has created n sockets and
// returns the n-th (1-based).
func wsFakeNth(t *testing.T, class safejs.Value, n int) safejs.Value {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, _ := class.Get("instances")
		if got, _ := list.Length(); got >= n {
			s, _ := list.Index(n - 1)
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no WebSocket #%d was created", n)
		}
		time.Sleep(time.Millisecond) // lets the event loop run
	}
}

func wsFakeCall(t *testing.T, v safejs.Value, method string, args ...any) {
	t.Helper()
	if _, err := v.Call(method, args...); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

func wsClosedWithin(t *testing.T, closed func(context.Context) (CloseStatus, error)) CloseStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := closed(ctx)
	if err != nil {
		t.Fatalf("Closed: %v", err)
	}
	return st
}

// wsSettles polls until cond holds, failing after a deadline.
func wsSettles(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSocketReportsTheServersCloseCodeAndReleasesEverything(t *testing.T) {
	class := wsFakeInstall(t)
	installFetch(t, wsServer())
	c := newClient(t, nil)
	goroutines, funcs := runtime.NumGoroutine(), jsx.LiveFuncs()

	stt, err := c.STTWebSocket(context.Background(), cartesia.STTOptions{
		Model: "ink-whisper", Encoding: "pcm_s16le", SampleRate: 16000})
	if err != nil {
		t.Fatal(err)
	}
	sock := wsFakeNth(t, class, 1)
	if url, _ := sock.Get("url"); !strings.HasPrefix(wsString(url),
		"ws://127.0.0.1:9/cartesia/stt/websocket?") {
		t.Fatalf("dialled %q", wsString(url))
	}
	wsFakeCall(t, sock, "serverText", `{"type":"transcript","text":"hi","is_final":true}`)
	wsFakeCall(t, sock, "serverClose", 1008, "session ended", true)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ev, err := stt.Next(ctx); err != nil || ev.Text != "hi" {
		t.Fatalf("first event = %+v, %v; want the transcript", ev, err)
	}
	_, err = stt.Next(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeWSClosed || !strings.Contains(e.Message, "1008") {
		t.Fatalf("after the close: %v; want ws_closed naming 1008", err)
	}
	if st := wsClosedWithin(t, stt.Closed); st != (CloseStatus{1008, "session ended"}) {
		t.Fatalf("Closed = %+v, want 1008 session ended", st)
	}

	wsSettles(t, "every callback released", func() bool { return jsx.LiveFuncs() == funcs })
	wsSettles(t, "the reader goroutine ending", func() bool {
		return runtime.NumGoroutine() <= goroutines
	})
}

func TestSocketClosedByTheClientReportsTheCloseItSent(t *testing.T) {
	class := wsFakeInstall(t)
	_ = class.Set("answer", map[string]any{"code": 1000, "reason": ""})
	installFetch(t, wsServer())
	c := newClient(t, nil)

	call, err := c.CallAgent(context.Background(), "agent-1", cartesia.AgentStartOptions{InputFormat: "pcm_16000"})
	if err != nil {
		t.Fatal(err)
	}
	call.Hangup()

	if st := wsClosedWithin(t, call.Closed); st != (CloseStatus{1000, "call ended by user"}) {
		t.Fatalf("Closed = %+v, want the close the client sent", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := call.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after hangup = %v, want io.EOF", err)
	}
	sock := wsFakeNth(t, class, 1)
	sent, _ := sock.Get("sent")
	first, _ := sent.Index(0)
	if !strings.Contains(wsString(first), `"event":"start"`) {
		t.Fatalf("first message sent = %s, want the start event", wsString(first))
	}
}

func TestSocketClosesWith4009OnAMessageOverTheReadLimit(t *testing.T) {
	class := wsFakeInstall(t)
	installFetch(t, wsServer())
	c := newClient(t, nil)

	stt, err := c.STTWebSocket(context.Background(), cartesia.STTOptions{
		Model: "ink-whisper", Encoding: "pcm_s16le", SampleRate: 16000})
	if err != nil {
		t.Fatal(err)
	}
	sock := wsFakeNth(t, class, 1)
	repeat, _ := safejs.Global().Call("eval", `(n) => "x".repeat(n)`)
	big, _ := repeat.Invoke(readLimit + 1)
	wsFakeCall(t, sock, "serverText", big)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = stt.Next(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeBadEvent {
		t.Fatalf("Next = %v, want bad_event", err)
	}
	if st := wsClosedWithin(t, stt.Closed); st.Code != closeTooBig {
		t.Fatalf("Closed = %+v, want %d", st, closeTooBig)
	}
	calls, _ := sock.Get("closeCalls")
	first, _ := calls.Index(0)
	code, _ := first.Get("code")
	if n, _ := code.Int(); n != closeTooBig {
		t.Fatalf("the client closed with %d, want %d", n, closeTooBig)
	}
}

func TestSocketRefusedTwiceIsWSRefusedAfterOneRefresh(t *testing.T) {
	class := wsFakeInstall(t)
	_ = class.Set("refuse", true)
	f := installFetch(t, wsServer())
	c := newClient(t, nil)
	funcs := jsx.LiveFuncs()

	_, err := c.TTSWebSocket(context.Background())

	var e *Error
	if !errors.As(err, &e) || e.Code != CodeWSRefused {
		t.Fatalf("TTSWebSocket = %v, want ws_refused", err)
	}
	if n := f.count("/api/token"); n != 2 {
		t.Fatalf("%d token refreshes, want 2 (the first and one after the refusal)", n)
	}
	if n := jsx.LiveFuncs(); n != funcs {
		t.Fatalf("live funcs %d after the refused opens, want %d", n, funcs)
	}
}

// wsServer answers every token request with a token for the grant asked for.
func wsServer() func(request) answer {
	proxy := server()
	return func(r request) answer {
		if r.url != "/api/token" {
			return proxy(r)
		}
		var body struct{ Grant string }
		_ = json.Unmarshal([]byte(r.body), &body)
		return answer{status: 200, body: strings.Replace(tokenAnswer, `"tts"`,
			strconv.Quote(body.Grant), 1)}
	}
}

func wsString(v safejs.Value) string {
	s, _ := v.String()
	return s
}
