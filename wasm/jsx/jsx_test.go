//go:build js && wasm

package jsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/hack-pad/safejs"
)

func promiseOf(t *testing.T, method string, v any) safejs.Value {
	t.Helper()
	ctor, _ := safejs.Global().Get("Promise")
	p, err := ctor.Call(method, v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAwaitReturnsResolvedValue(t *testing.T) {
	v, err := Await(context.Background(), promiseOf(t, "resolve", 42))

	if n, _ := v.Int(); err != nil || n != 42 {
		t.Fatalf("Await = %v, %v; want 42", n, err)
	}
}

func TestAwaitTurnsRejectionIntoJSError(t *testing.T) {
	ctor, _ := safejs.Global().Get("TypeError")
	reason, _ := ctor.New("bad thing")

	_, err := Await(context.Background(), promiseOf(t, "reject", reason))

	var je *JSError
	if !errors.As(err, &je) || je.Name != "TypeError" || je.Message != "bad thing" {
		t.Fatalf("error = %v, want TypeError: bad thing", err)
	}
}

func TestAwaitStopsWhenContextEnds(t *testing.T) {
	never, _ := safejs.Global().Get("Promise")
	executor, _ := safejs.FuncOf(func(safejs.Value, []safejs.Value) any { return nil })
	defer executor.Release()
	p, _ := never.New(executor)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := Await(ctx, p)

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

type shaped struct{}

func (shaped) Error() string { return "shaped" }
func (shaped) JSValue() any  { return map[string]any{"code": "x"} }

func TestPromiseSettlesFromGo(t *testing.T) {
	cases := []struct {
		name    string
		fn      func() (any, error)
		wantErr string
	}{
		{"value", func() (any, error) { return "ok", nil }, ""},
		{"error", func() (any, error) { return nil, errors.New("nope") }, "js: Error: nope"},
		{"panic", func() (any, error) { panic("boom") }, "js: Error: jsx: panic: boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Promise(tc.fn)
			if err != nil {
				t.Fatal(err)
			}

			v, err := Await(context.Background(), p)

			if tc.wantErr == "" {
				if s, _ := v.String(); err != nil || s != "ok" {
					t.Fatalf("got %q, %v; want ok", s, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestPromiseRejectsWithValuersOwnValue(t *testing.T) {
	p, err := Promise(func() (any, error) { return nil, fmt.Errorf("wrapped: %w", shaped{}) })
	if err != nil {
		t.Fatal(err)
	}
	codeOf, _ := safejs.FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		code, _ := args[0].Get("code")
		return code
	})
	defer codeOf.Release()
	caught, _ := p.Call("catch", codeOf)

	v, err := Await(context.Background(), caught)

	if code, _ := v.String(); err != nil || code != "x" {
		t.Fatalf("rejection code = %q, %v; want x", code, err)
	}
}

func TestBytesRoundTrip(t *testing.T) {
	want := []byte{0, 1, 2, 250, 255}

	arr, err := Uint8Array(want)
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := arr.Get("buffer")
	fromArray, err1 := Bytes(arr)
	fromBuffer, err2 := Bytes(buf)

	if err1 != nil || err2 != nil || string(fromArray) != string(want) ||
		string(fromBuffer) != string(want) {
		t.Fatalf("got %v (%v), %v (%v); want %v", fromArray, err1, fromBuffer, err2, want)
	}
}

// Node's fetch serves data: URLs, which exercises the response side without a server.
const dataURL = "data:application/octet-stream;base64,aGVsbG8gd29ybGQ="

func TestFetchReadsWholeBody(t *testing.T) {
	resp, err := Fetch(context.Background(), Request{URL: dataURL})
	if err != nil {
		t.Fatal(err)
	}

	b, err := resp.Bytes()

	if err != nil || resp.Status != 200 || string(b) != "hello world" {
		t.Fatalf("status %d body %q err %v; want 200 hello world", resp.Status, b, err)
	}
	if ct := resp.Header("Content-Type"); ct != "application/octet-stream" {
		t.Fatalf("content type = %q", ct)
	}
}

func TestFetchStreamsBody(t *testing.T) {
	resp, err := Fetch(context.Background(), Request{URL: dataURL})
	if err != nil {
		t.Fatal(err)
	}
	body, err := resp.Body()
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()

	b, err := io.ReadAll(body)

	if err != nil || string(b) != "hello world" {
		t.Fatalf("body %q err %v; want hello world", b, err)
	}
}

func TestFetchWithEndedContextFailsTyped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := Fetch(ctx, Request{URL: dataURL})

	var fe *FetchError
	if !errors.As(err, &fe) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want a FetchError wrapping context.Canceled", err)
	}
}
