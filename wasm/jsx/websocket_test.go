//go:build js && wasm

package jsx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hack-pad/safejs"
)

// fakeWebSocketJS is a stand-in for the browser's WebSocket (Node 20 has none). Like a
// browser it dispatches events as tasks, looking the handler up when the task runs, and
// throws where browsers throw (send while connecting, a close code or reason browsers
// refuse). The test drives the server side with the server* methods. Handlers that run
// after Go released them show up in releasedCalls (Go reports them on console.error).
const fakeWebSocketJS = `(() => {
  class FakeWebSocket {
    constructor(url) {
      if (typeof url !== "string" || !/^wss?:\/\//.test(url)) {
        throw new SyntaxError("The URL '" + url + "' is invalid.");
      }
      this.url = url;
      this.readyState = 0;
      this.binaryType = "blob";
      this.bufferedAmount = 0;
      this.sent = [];
      this.closeCalls = [];
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      FakeWebSocket.instances.push(this);
      if (FakeWebSocket.autoOpen) this.serverOpen();
    }
    fire(name, ev, before) {
      setTimeout(() => {
        if (before && !before()) return;
        const h = this["on" + name];
        if (h) h(ev);
      }, 0);
    }
    serverOpen() {
      this.fire("open", {type: "open"}, () => {
        if (this.readyState !== 0) return false;
        this.readyState = 1;
        return true;
      });
    }
    serverText(s) { this.fire("message", {data: s}); }
    serverBinary(arr) {
      const buf = arr.slice().buffer;
      this.fire("message", {data: this.binaryType === "arraybuffer" ? buf : new Blob([buf])});
    }
    serverError() { this.fire("error", {type: "error"}); }
    serverClose(code, reason, wasClean) {
      this.fire("close", {code, reason, wasClean}, () => {
        if (this.readyState === 3) return false;
        this.readyState = 3;
        return true;
      });
    }
    send(data) {
      if (this.readyState === 0) throw new DOMException("still connecting", "InvalidStateError");
      if (this.readyState !== 1) return;
      if (typeof data === "string") {
        this.sent.push({binary: false, text: data});
      } else if (ArrayBuffer.isView(data)) {
        this.sent.push({binary: true,
          text: new TextDecoder().decode(data), type: data.constructor.name});
      } else {
        throw new TypeError("unsupported payload");
      }
      this.bufferedAmount += typeof data === "string" ? data.length : data.byteLength;
    }
    close(code, reason) {
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
        throw new DOMException("code " + code + " refused", "InvalidAccessError");
      }
      if (reason !== undefined && new TextEncoder().encode(reason).length > 123) {
        throw new DOMException("reason too long", "SyntaxError");
      }
      this.closeCalls.push({code, reason});
      if (this.readyState >= 2) return;
      const connecting = this.readyState === 0;
      this.readyState = 2;
      if (connecting) {
        this.serverError();
        this.serverClose(1006, "", false);
      } else if (FakeWebSocket.echoClose) {
        this.serverClose(code === undefined ? 1005 : code, reason || "", true);
      }
    }
  }
  FakeWebSocket.instances = [];
  FakeWebSocket.autoOpen = true;
  FakeWebSocket.echoClose = true;
  FakeWebSocket.releasedCalls = 0;
  return FakeWebSocket;
})()`

// fakeWS is the installed fake WebSocket class.
type fakeWS struct {
	t     *testing.T
	class safejs.Value
}

// installFakeWebSocket puts the fake class on globalThis.WebSocket for one test and counts
// "call to released function" console errors.
func installFakeWebSocket(t *testing.T) *fakeWS {
	t.Helper()
	global := safejs.Global()
	class, err := global.Call("eval", fakeWebSocketJS)
	if err != nil {
		t.Fatalf("eval fake WebSocket: %v", err)
	}
	oldWS, _ := global.Get("WebSocket")
	if err := global.Set("WebSocket", class); err != nil {
		t.Fatal(err)
	}

	console, _ := global.Get("console")
	oldError, _ := console.Get("error")
	counter, err := global.Call("eval", `((cls, orig) => function (...args) {
	  if (String(args[0]).includes("call to released function")) cls.releasedCalls++;
	  return orig.apply(this, args);
	})`)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := counter.Invoke(class, oldError)
	if err != nil {
		t.Fatal(err)
	}
	_ = console.Set("error", wrapped)

	t.Cleanup(func() {
		_ = console.Set("error", oldError)
		if oldWS.IsUndefined() {
			_ = global.Delete("WebSocket")
		} else {
			_ = global.Set("WebSocket", oldWS)
		}
	})
	return &fakeWS{t: t, class: class}
}

func (f *fakeWS) set(prop string, v any) {
	if err := f.class.Set(prop, v); err != nil {
		f.t.Fatal(err)
	}
}

// socket waits (polling, with a deadline) for the n-th socket the page created (1-based).
func (f *fakeWS) socket(n int) safejs.Value {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, _ := f.class.Get("instances")
		if got, _ := list.Length(); got >= n {
			s, _ := list.Index(n - 1)
			return s
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("no WebSocket #%d was created", n)
		}
		time.Sleep(time.Millisecond) // lets the event loop run the page's code
	}
}

func (f *fakeWS) releasedCalls() int {
	v, _ := f.class.Get("releasedCalls")
	n, _ := v.Int()
	return n
}

func call(t *testing.T, v safejs.Value, method string, args ...any) safejs.Value {
	t.Helper()
	r, err := v.Call(method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return r
}

func prop(t *testing.T, v safejs.Value, path ...string) safejs.Value {
	t.Helper()
	for _, p := range path {
		var err error
		if v, err = v.Get(p); err != nil {
			t.Fatalf("get %s: %v", p, err)
		}
	}
	return v
}

func dialFake(t *testing.T, url string) *WebSocket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := Dial(ctx, url)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return w
}

func readMsg(t *testing.T, w *WebSocket) (bool, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	binary, data, err := w.Read(ctx)
	return binary, string(data), err
}

func TestWebSocketDeliversMessagesInOrderThenTheClose(t *testing.T) {
	fake := installFakeWebSocket(t)
	before := LiveFuncs()

	w := dialFake(t, "http://127.0.0.1:9/cartesia/tts/websocket?x=1")
	sock := fake.socket(1)
	if url, _ := prop(t, sock, "url").String(); url != "ws://127.0.0.1:9/cartesia/tts/websocket?x=1" {
		t.Fatalf("dialled %q, want the ws:// twin of the http URL", url)
	}
	if bt, _ := prop(t, sock, "binaryType").String(); bt != "arraybuffer" {
		t.Fatalf("binaryType = %q, want arraybuffer", bt)
	}
	bin, _ := Uint8Array([]byte{0, 1, 255})
	call(t, sock, "serverText", "first")
	call(t, sock, "serverBinary", bin)
	call(t, sock, "serverText", "héllo")
	call(t, sock, "serverClose", 4001, "session ended", true)

	want := []struct {
		binary bool
		data   string
	}{{false, "first"}, {true, "\x00\x01\xff"}, {false, "héllo"}}
	for i, m := range want {
		binary, data, err := readMsg(t, w)
		if err != nil || binary != m.binary || data != m.data {
			t.Fatalf("message %d = %v %q %v; want %v %q", i, binary, data, err, m.binary, m.data)
		}
	}
	_, _, err := readMsg(t, w)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "session ended" || !ce.WasClean {
		t.Fatalf("after the messages: %v; want CloseError 4001 session ended, clean", err)
	}
	_, _, again := readMsg(t, w)
	if !errors.As(again, &ce) || ce.Code != 4001 {
		t.Fatalf("second read after close: %v; want the same CloseError", again)
	}

	select {
	case <-w.Done():
	default:
		t.Fatal("Done is not closed after the close event")
	}
	for _, h := range []string{"onopen", "onmessage", "onerror", "onclose"} {
		if v := prop(t, sock, h); !v.IsNull() {
			t.Errorf("%s still set after the close", h)
		}
	}
	if after := LiveFuncs(); after != before {
		t.Fatalf("live funcs %d after the close, want %d", after, before)
	}
}

func TestWebSocketLostConnectionReportsAbnormalClose(t *testing.T) {
	fake := installFakeWebSocket(t)
	w := dialFake(t, "ws://127.0.0.1:9/a")
	sock := fake.socket(1)

	call(t, sock, "serverError")
	call(t, sock, "serverClose", 1006, "", false)
	_, _, err := readMsg(t, w)

	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1006 || ce.WasClean {
		t.Fatalf("Read = %v; want CloseError 1006, not clean", err)
	}
	if !strings.Contains(err.Error(), "not clean") {
		t.Fatalf("error text %q does not say the close was not clean", err)
	}
}

func TestWebSocketWriteSendsTextAndBinaryCopies(t *testing.T) {
	fake := installFakeWebSocket(t)
	w := dialFake(t, "ws://127.0.0.1:9/a")
	sock := fake.socket(1)
	data := []byte("audio")

	if err := w.Write(false, []byte(`{"type":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(true, data); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X' // the message was copied: changing Go's bytes changes nothing sent

	sent := prop(t, sock, "sent")
	if n, _ := sent.Length(); n != 2 {
		t.Fatalf("%d messages sent, want 2", n)
	}
	first, _ := sent.Index(0)
	second, _ := sent.Index(1)
	if s, _ := prop(t, first, "text").String(); s != `{"type":"x"}` ||
		truthy(prop(t, first, "binary")) {
		t.Fatalf("first message = %q binary %v", s, truthy(prop(t, first, "binary")))
	}
	if s, _ := prop(t, second, "text").String(); s != "audio" ||
		!truthy(prop(t, second, "binary")) {
		t.Fatalf("second message = %q, want binary audio", s)
	}
	if n, err := w.BufferedAmount(); err != nil || n != len(`{"type":"x"}`)+len("audio") {
		t.Fatalf("BufferedAmount = %d, %v", n, err)
	}

	call(t, sock, "serverClose", 1000, "", true)
	readMsg(t, w)
	if err := w.Write(false, []byte("late")); !errors.Is(err, ErrNotOpen) {
		t.Fatalf("Write after close = %v, want ErrNotOpen", err)
	}
}

// closeAndWait closes w and waits for its close event, so that its callbacks are released
// before the next test counts live functions.
func closeAndWait(t *testing.T, w *WebSocket) {
	t.Helper()
	if err := w.Close(1000, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("no close event after Close")
	}
}

func truthy(v safejs.Value) bool {
	b, _ := v.Truthy()
	return b
}

func TestWebSocketDialCancelledDuringOpenClosesAndReleases(t *testing.T) {
	fake := installFakeWebSocket(t)
	fake.set("autoOpen", false)
	before := LiveFuncs()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)

	go func() {
		_, err := Dial(ctx, "ws://127.0.0.1:9/a?access_token=secret")
		errc <- err
	}()
	sock := fake.socket(1)
	cancel()
	err := <-errc

	var de *DialError
	if !errors.As(err, &de) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial = %v; want a DialError wrapping context.Canceled", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("dial error %q shows the URL's query", err)
	}
	if n, _ := prop(t, sock, "closeCalls").Length(); n != 1 {
		t.Fatalf("close called %d times on the connecting socket, want 1", n)
	}
	if after := LiveFuncs(); after != before {
		t.Fatalf("live funcs %d after the cancelled dial, want %d", after, before)
	}

	// The browser's late events (error, close; an open would be the same) reach no Go code.
	call(t, sock, "serverOpen")
	waitForTasks(t)
	if n := fake.releasedCalls(); n != 0 {
		t.Fatalf("%d events reached released Go functions", n)
	}
}

// waitForTasks lets the event loop run the tasks queued so far: a timer queued now runs
// after them.
func waitForTasks(t *testing.T) {
	t.Helper()
	promise, _ := safejs.Global().Get("Promise")
	executor, _ := FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		_, _ = safejs.Global().Call("setTimeout", args[0], 0)
		return nil
	})
	p, err := promise.New(executor.Value())
	executor.Release()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Await(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func TestWebSocketDialFailsOnErrorOrCloseBeforeOpen(t *testing.T) {
	for _, tc := range []struct {
		name  string
		event func(safejs.Value)
	}{
		{"error", func(s safejs.Value) { _, _ = s.Call("serverError") }},
		{"close", func(s safejs.Value) { _, _ = s.Call("serverClose", 1006, "", false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := installFakeWebSocket(t)
			fake.set("autoOpen", false)
			before := LiveFuncs()
			errc := make(chan error, 1)

			go func() {
				_, err := Dial(context.Background(), "ws://127.0.0.1:9/a")
				errc <- err
			}()
			sock := fake.socket(1)
			tc.event(sock)
			err := <-errc

			var de *DialError
			if !errors.As(err, &de) || errors.Is(err, context.Canceled) {
				t.Fatalf("Dial = %v; want a DialError", err)
			}
			if after := LiveFuncs(); after != before {
				t.Fatalf("live funcs %d after the failed dial, want %d", after, before)
			}
			call(t, sock, "serverClose", 1006, "", false)
			waitForTasks(t)
			if n := fake.releasedCalls(); n != 0 {
				t.Fatalf("%d events reached released Go functions", n)
			}
		})
	}
}

func TestWebSocketDialRefusesBadURLWithoutQuotingIt(t *testing.T) {
	installFakeWebSocket(t)

	_, err := Dial(context.Background(), "ftp://127.0.0.1/a?access_token=secret")

	var de *DialError
	if !errors.As(err, &de) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Dial = %v; want a DialError that does not quote the query", err)
	}
}

func TestWebSocketCloseValidatesCodeAndClampsReason(t *testing.T) {
	fake := installFakeWebSocket(t)
	fake.set("echoClose", false)
	w := dialFake(t, "ws://127.0.0.1:9/a")
	sock := fake.socket(1)

	for _, code := range []int{0, 1001, 1008, 1011, 2999, 5000} {
		if err := w.Close(code, ""); err == nil {
			t.Errorf("Close(%d) = nil, want an error (browsers refuse it)", code)
		}
	}
	if n, _ := prop(t, sock, "closeCalls").Length(); n != 0 {
		t.Fatalf("refused codes reached the browser %d times", n)
	}

	long := strings.Repeat("é", 100) // 200 bytes: cut to 61 characters (122 bytes)
	if err := w.Close(4009, long); err != nil {
		t.Fatalf("Close(4009, long reason) = %v, want the reason clamped", err)
	}
	calls := prop(t, sock, "closeCalls")
	got, _ := calls.Index(0)
	code, _ := prop(t, got, "code").Int()
	reason, _ := prop(t, got, "reason").String()
	if code != 4009 || reason != strings.Repeat("é", 61) {
		t.Fatalf("close sent %d %q (%d bytes); want 4009 and 61 characters", code, reason,
			len(reason))
	}

	call(t, sock, "serverClose", 4009, reason, true)
	readMsg(t, w)
	if err := w.Close(1000, ""); err != nil {
		t.Fatalf("Close after the close event = %v, want nil", err)
	}
}

func TestClampCloseReason(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"session ended", "session ended"},
		{strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{strings.Repeat("a", 124), strings.Repeat("a", 123)},
		{strings.Repeat("a", 122) + "€", strings.Repeat("a", 122)}, // no half character
		{"bad\xffbyte", "bad\uFFFDbyte"},
	} {
		if got := ClampCloseReason(tc.in); got != tc.want {
			t.Errorf("ClampCloseReason(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWebSocketReadLimitSkipsBigMessagesUncopied(t *testing.T) {
	fake := installFakeWebSocket(t)
	w := dialFake(t, "ws://127.0.0.1:9/a")
	w.SetReadLimit(4)
	sock := fake.socket(1)
	big, _ := Uint8Array([]byte("12345"))

	call(t, sock, "serverText", "toolong")
	call(t, sock, "serverText", "éé€") // 3 UTF-16 units but 7 UTF-8 bytes
	call(t, sock, "serverBinary", big)
	call(t, sock, "serverText", "ok")

	for i, wantBinary := range []bool{false, false, true} {
		_, _, err := readMsg(t, w)
		var tb *TooBigError
		if !errors.As(err, &tb) || tb.Limit != 4 || tb.Binary != wantBinary {
			t.Fatalf("message %d: %v; want TooBigError (binary %v)", i, err, wantBinary)
		}
	}
	if _, data, err := readMsg(t, w); err != nil || data != "ok" {
		t.Fatalf("after the big ones: %q %v; want ok", data, err)
	}
	closeAndWait(t, w)
}

func TestWebSocketReadStopsWhenContextEnds(t *testing.T) {
	installFakeWebSocket(t)
	w := dialFake(t, "ws://127.0.0.1:9/a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, _, err := w.Read(ctx)

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	closeAndWait(t, w)
}

func TestWebSocketDialWithoutWebSocketFails(t *testing.T) {
	global := safejs.Global()
	old, _ := global.Get("WebSocket")
	_ = global.Delete("WebSocket")
	t.Cleanup(func() {
		if !old.IsUndefined() {
			_ = global.Set("WebSocket", old)
		}
	})

	_, err := Dial(context.Background(), "ws://127.0.0.1:9/a")

	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("Dial = %v; want a DialError", err)
	}
}
