package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// uploadRequest is a multipart POST to path carrying body, as the page sends it.
func (h *harness) uploadRequest(path, ctype string, body io.Reader, size int64) *http.Request {
	r, err := http.NewRequest(http.MethodPost, h.front.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	r.ContentLength = size
	r.Header.Set("Content-Type", ctype)
	r.AddCookie(h.sessionCookie())
	r.AddCookie(h.tokenCookie(token.STT, time.Minute))
	return r
}

func TestUploadIsStreamedUpstreamAsItArrives(t *testing.T) {
	h := newHarness(t, nil)
	firstBytes := make(chan struct{})
	received := make(chan []byte, 1)
	h.raw = func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1024)
		n, _ := io.ReadAtLeast(r.Body, buf, 1024)
		close(firstBytes)
		rest, _ := io.ReadAll(r.Body)
		received <- append(buf[:n], rest...)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"transcript","text":"hello"}`)
	}

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	_ = mw.WriteField("model", "ink-whisper")
	fw, _ := mw.CreateFormFile("file", "a.wav")
	_, _ = fw.Write(bytes.Repeat([]byte("RIFF"), 64<<10))
	_ = mw.Close()
	all := form.Bytes()

	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(all[:4096])
		// The rest is sent only once upstream has the first bytes: a proxy that read the
		// whole upload before forwarding would never get there.
		select {
		case <-firstBytes:
			_, _ = pw.Write(all[4096:])
			_ = pw.Close()
		case <-time.After(5 * time.Second):
			_ = pw.CloseWithError(fmt.Errorf("upstream saw nothing of a started upload"))
		}
	}()

	r := h.uploadRequest("/cartesia/stt?encoding=pcm_s16le&sample_rate=16000&access_token=x"+
		"&cartesia_version=1", mw.FormDataContentType(), pr, -1)
	r.Header.Set("X-CSRF", "1")
	resp, body := h.do(r)
	if resp.StatusCode != 200 || body != `{"type":"transcript","text":"hello"}` {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if got := <-received; !bytes.Equal(got, all) {
		t.Errorf("upstream received %d bytes, want the %d sent", len(got), len(all))
	}

	up := h.upstreamSaw()[0]
	if up.path != "/stt" || up.rawQuery != "encoding=pcm_s16le&sample_rate=16000" {
		t.Errorf("upstream request %s?%s", up.path, up.rawQuery)
	}
	if up.header.Get("Content-Type") != mw.FormDataContentType() ||
		up.header.Get("Authorization") != "Bearer "+upstreamToken ||
		up.header.Get("Cookie") != "" || up.header.Get("X-Csrf") != "" {
		t.Errorf("upstream headers %v", up.header)
	}
}

func TestUploadRefusals(t *testing.T) {
	form := "multipart/form-data; boundary=xyz"
	tests := []struct {
		name   string
		path   string
		ctype  string
		body   func() (io.Reader, int64)
		status int
		code   string
	}{
		{"chunked over 25 MiB", "/cartesia/audio/transcriptions", form, func() (io.Reader, int64) {
			return io.LimitReader(zeros{}, proxy.UploadLimit+1), -1
		}, 413, "body_too_large"},
		{"json", "/cartesia/stt", "application/json", func() (io.Reader, int64) {
			return strings.NewReader("{}"), 2
		}, 415, "unsupported_media_type"},
		{"multipart without a boundary", "/cartesia/stt", "multipart/form-data",
			func() (io.Reader, int64) { return strings.NewReader("x"), 1 },
			415, "unsupported_media_type"},
		{"url-encoded form", "/cartesia/stt", "application/x-www-form-urlencoded",
			func() (io.Reader, int64) { return strings.NewReader("a=1"), 3 },
			415, "unsupported_media_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.raw = func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, `{"text":""}`)
			}
			body, size := tt.body()
			resp, got := h.do(h.uploadRequest(tt.path, tt.ctype, body, size))
			if resp.StatusCode != tt.status || errorCode(t, got).Code != tt.code {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, got, tt.status, tt.code)
			}
			if size >= 0 && len(h.upstreamSaw()) != 0 {
				t.Error("upstream was called for an upload refused up front")
			}
		})
	}
}

func TestUploadDeclaredOverTheCapIsRefusedUpFront(t *testing.T) {
	h := newHarness(t, nil)
	conn, err := net.Dial("tcp", h.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	tok := h.tokenCookie(token.STT, time.Minute)
	fmt.Fprintf(conn, "POST /cartesia/stt HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n"+
		"Cookie: %s=%s; %s=%s\r\n\r\n--b\r\n", proxy.UploadLimit+1,
		session.CookieName, h.sess.ID, tok.Name, tok.Value)

	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge ||
		errorCode(t, string(b)).Code != "body_too_large" {
		t.Errorf("got %d %s, want 413 body_too_large", resp.StatusCode, b)
	}
	if len(h.upstreamSaw()) != 0 {
		t.Error("upstream was called for an upload declared over the cap")
	}
}

func TestUploadToTheOpenAIRouteDropsTheQuery(t *testing.T) {
	h := newHarness(t, nil)
	h.raw = func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"error_code":"bad_file","title":"Bad","message":"no audio"}`)
	}
	resp, body := h.do(h.uploadRequest("/cartesia/audio/transcriptions?encoding=x&api_key=y",
		"multipart/form-data; boundary=b", strings.NewReader("--b--\r\n"), 7))
	if resp.StatusCode != 422 || errorCode(t, body).Code != "upstream_error" {
		t.Errorf("got %d %s, want the upstream's 422 as upstream_error", resp.StatusCode, body)
	}
	if up := h.upstreamSaw(); len(up) != 1 || up[0].path != "/audio/transcriptions" ||
		up[0].rawQuery != "" {
		t.Errorf("upstream saw %+v", up)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
