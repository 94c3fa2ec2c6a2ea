package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
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

// pageForm is a batch transcription form as a page sends it, the file and then the text
// fields (name, value, name, value...), and its Content-Type.
func pageForm(t testing.TB, file []byte, fields ...string) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, err := mw.CreateFormFile("file", "clip.wav")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(file)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	_ = mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

// formOfSize is a valid form of exactly n bytes.
func formOfSize(t testing.TB, n int) ([]byte, string) {
	t.Helper()
	empty, _ := pageForm(t, nil, "model", "ink-whisper")
	body, ctype := pageForm(t, bytes.Repeat([]byte{0x5a}, n-len(empty)), "model", "ink-whisper")
	if len(body) != n {
		t.Fatalf("form of %d bytes, want %d", len(body), n)
	}
	return body, ctype
}

// formRequest is a small valid upload to path.
func (h *harness) formRequest(path string) *http.Request {
	body, ctype := pageForm(h.t, []byte("RIFFaudio"), "model", "ink-whisper")
	return h.uploadRequest(path, ctype, bytes.NewReader(body), int64(len(body)))
}

// chunked hides a reader's length, so that the client sends it chunked.
type chunked struct{ io.Reader }

// upstreamCounter is a fake upstream that counts the requests and body bytes it
// receives and answers each with a transcript.
type upstreamCounter struct{ requests, bytes atomic.Int64 }

func (h *harness) countUpstream() *upstreamCounter {
	u := &upstreamCounter{}
	h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		u.bytes.Add(n)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"transcript","text":"ok"}`)
	})
	return u
}

// sawNothing fails unless upstream received no request and no byte.
func (u *upstreamCounter) sawNothing(t *testing.T) {
	t.Helper()
	if n, b := u.requests.Load(), u.bytes.Load(); n != 0 || b != 0 {
		t.Errorf("upstream received %d requests and %d bytes, want none", n, b)
	}
}

// spoolHarness is a harness whose uploads spool to a directory of the test's own.
func spoolHarness(t *testing.T, cfg func(*proxy.Config)) (*harness, string) {
	t.Helper()
	dir := t.TempDir()
	h := newHarness(t, func(c *proxy.Config) {
		c.SpoolDir = dir
		if cfg != nil {
			cfg(c)
		}
	})
	return h, dir
}

// checkSpoolGone waits until the proxy holds no upload any more, then checks that the
// spool directory is empty.
func checkSpoolGone(t *testing.T, h *harness, dir string) {
	t.Helper()
	waitFor(t, "the spool to be released", func() bool { return h.proxy.SpoolInUse() == 0 })
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("spool file left behind: %s", e.Name())
	}
}

func TestUploadReachesUpstreamOnlyWholeAndReEncoded(t *testing.T) {
	h, dir := spoolHarness(t, nil)
	called := make(chan struct{}, 1)
	type received struct {
		length   int64
		chunked  bool
		ctype    string
		body     []byte
		rawQuery string
	}
	got := make(chan received, 1)
	h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
		called <- struct{}{}
		b, _ := io.ReadAll(r.Body)
		got <- received{r.ContentLength, len(r.TransferEncoding) > 0,
			r.Header.Get("Content-Type"), b, r.URL.RawQuery}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"transcript","text":"hello"}`)
	})

	// A form as a client might send it: an extra part header, and a file larger than
	// the in-memory spool.
	audio := bytes.Repeat([]byte("RIFF\r\n--"), 40<<10)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Disposition", `form-data; name="file"; filename="take 1.wav"`)
	hdr.Set("Content-Type", "audio/wav")
	hdr.Set("X-Extra", "dropped")
	fw, _ := mw.CreatePart(hdr)
	_, _ = fw.Write(audio)
	_ = mw.WriteField("model", "ink-whisper")
	_ = mw.WriteField("language", "en")
	_ = mw.WriteField("timestamp_granularities[]", "word")
	_ = mw.Close()
	all := form.Bytes()

	// Everything but the last byte is sent at once; the last only after a while in
	// which upstream must not have been called.
	var early atomic.Bool
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(all[:len(all)-1])
		select {
		case <-called:
			early.Store(true)
			called <- struct{}{}
		case <-time.After(300 * time.Millisecond):
		}
		_, _ = pw.Write(all[len(all)-1:])
		_ = pw.Close()
	}()

	r := h.uploadRequest("/cartesia/stt?encoding=pcm_s16le&sample_rate=16000&access_token=x"+
		"&cartesia_version=1", mw.FormDataContentType(), pr, -1)
	r.Header.Set("X-CSRF", "1")
	resp, body := h.do(r)
	if resp.StatusCode != 200 || body != `{"type":"transcript","text":"hello"}` {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if early.Load() {
		t.Error("upstream was called before the upload was complete")
	}

	up := <-got
	if up.chunked || up.length != int64(len(up.body)) {
		t.Errorf("upstream got Content-Length %d for %d bytes (chunked %v)", up.length,
			len(up.body), up.chunked)
	}
	if up.rawQuery != "encoding=pcm_s16le&sample_rate=16000" {
		t.Errorf("upstream query %q", up.rawQuery)
	}
	mt, params, err := mime.ParseMediaType(up.ctype)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == mw.Boundary() {
		t.Fatalf("upstream Content-Type %q: want a form under the proxy's own boundary",
			up.ctype)
	}

	mr := multipart.NewReader(bytes.NewReader(up.body), params["boundary"])
	want := []struct{ name, filename, ctype, value string }{
		{"file", "take 1.wav", "audio/wav", string(audio)},
		{"model", "", "", "ink-whisper"},
		{"language", "", "", "en"},
		{"timestamp_granularities[]", "", "", "word"},
	}
	for _, w := range want {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %s: %v", w.name, err)
		}
		v, _ := io.ReadAll(p)
		if p.FormName() != w.name || p.FileName() != w.filename ||
			p.Header.Get("Content-Type") != w.ctype || string(v) != w.value {
			t.Errorf("part %q %q %q (%d bytes), want %q %q %q (%d bytes)", p.FormName(),
				p.FileName(), p.Header.Get("Content-Type"), len(v), w.name, w.filename,
				w.ctype, len(w.value))
		}
		if len(p.Header) > 2 {
			t.Errorf("part %s carried headers %v", w.name, p.Header)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("after the last part: %v", err)
	}

	if h.proxy.SpoolFiles() == 0 {
		t.Error("an upload over the memory buffer did not spool to a file")
	}
	checkSpoolGone(t, h, dir)

	seen := h.upstreamSaw()[0]
	if seen.Header.Get("Authorization") != "Bearer "+upstreamToken ||
		seen.Header.Get("Cookie") != "" || seen.Header.Get("X-Csrf") != "" {
		t.Errorf("upstream headers %v", seen.Header)
	}
}

func TestUploadOfExactlyTheCapPasses(t *testing.T) {
	for _, declared := range []bool{false, true} {
		t.Run(fmt.Sprintf("declared length %v", declared), func(t *testing.T) {
			h, dir := spoolHarness(t, nil)
			up := h.countUpstream()
			body, ctype := formOfSize(t, proxy.UploadLimit)
			size := int64(-1)
			if declared {
				size = int64(len(body))
			}
			resp, got := h.do(h.uploadRequest("/cartesia/stt", ctype,
				chunked{bytes.NewReader(body)}, size))
			if resp.StatusCode != 200 {
				t.Fatalf("got %d %s", resp.StatusCode, got)
			}
			if up.requests.Load() != 1 || up.bytes.Load() < proxy.UploadLimit-1024 {
				t.Errorf("upstream received %d requests, %d bytes", up.requests.Load(),
					up.bytes.Load())
			}
			checkSpoolGone(t, h, dir)
		})
	}
}

func TestUploadOverTheCapNeverReachesUpstream(t *testing.T) {
	h, dir := spoolHarness(t, nil)
	up := h.countUpstream()
	body, ctype := formOfSize(t, proxy.UploadLimit+1)

	resp, got := h.do(h.uploadRequest("/cartesia/audio/transcriptions", ctype,
		chunked{bytes.NewReader(body)}, -1))
	if resp.StatusCode != http.StatusRequestEntityTooLarge ||
		errorCode(t, got).Code != "body_too_large" {
		t.Errorf("got %d %s, want 413 body_too_large", resp.StatusCode, got)
	}
	up.sawNothing(t)
	if h.proxy.SpoolFiles() == 0 {
		t.Error("the refused upload never reached the disk spool; the test proves little")
	}
	checkSpoolGone(t, h, dir)
}

func TestUploadDeclaredOverTheCapIsRefusedUpFront(t *testing.T) {
	h := newHarness(t, nil)
	up := h.countUpstream()
	conn := h.rawPost("/cartesia/stt", token.STT, fmt.Sprintf(
		"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n",
		proxy.UploadLimit+1), "--b\r\n")

	resp, b := h.readRaw(conn, http.MethodPost, "/cartesia/stt")
	if resp.StatusCode != http.StatusRequestEntityTooLarge ||
		errorCode(t, b).Code != "body_too_large" {
		t.Errorf("got %d %s, want 413 body_too_large", resp.StatusCode, b)
	}
	up.sawNothing(t)
}

func TestUploadMediaTypeRefusals(t *testing.T) {
	tests := []struct {
		name, ctype, body string
	}{
		{"json", "application/json", "{}"},
		{"multipart without a boundary", "multipart/form-data", "x"},
		{"url-encoded form", "application/x-www-form-urlencoded", "a=1"},
		{"mixed", "multipart/mixed; boundary=b", "--b--\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			up := h.countUpstream()
			resp, got := h.do(h.uploadRequest("/cartesia/stt", tt.ctype,
				strings.NewReader(tt.body), int64(len(tt.body))))
			if resp.StatusCode != 415 || errorCode(t, got).Code != "unsupported_media_type" {
				t.Errorf("got %d %s, want 415 unsupported_media_type", resp.StatusCode, got)
			}
			up.sawNothing(t)
		})
	}
}

// TestUploadFormRefusals: a form that breaks the multipart format or the route's
// allowlist gets 400 bad_request naming the problem, and upstream sees nothing.
func TestUploadFormRefusals(t *testing.T) {
	const bnd = "b0undary"
	part := func(headers, content string) string {
		return "--" + bnd + "\r\n" + headers + "\r\n\r\n" + content + "\r\n"
	}
	file := part(`Content-Disposition: form-data; name="file"; filename="a.wav"`, "RIFF")
	model := part(`Content-Disposition: form-data; name="model"`, "ink-whisper")
	end := "--" + bnd + "--\r\n"
	manyHeaders := strings.Repeat("X-Pad: "+strings.Repeat("a", 90)+"\r\n", 100)

	tests := []struct {
		name, body, want string
		boundary         string // default bnd
	}{
		// The allowlist stops this one at its third part; the part cap is a backstop
		// for wider allowlists (see TestCopyFormPartCap).
		{name: "20,000 parts", body: file + strings.Repeat(model, 19_999) + end,
			want: `"model" appears more than 1 times`},
		{name: "a 2 MiB part header", body: part(`Content-Disposition: form-data; `+
			`name="file"; filename="`+strings.Repeat("a", 2<<20)+`"`, "RIFF") + end,
			want: "headers are over 8192 bytes"},
		{name: "many part headers", body: part(`Content-Disposition: form-data; `+
			`name="file"`+"\r\n"+manyHeaders[:len(manyHeaders)-2], "RIFF") + end,
			want: "headers are over 8192 bytes"},
		{name: "a field off the allowlist", body: file + part(
			`Content-Disposition: form-data; name="prompt"`, "hi") + end,
			want: `form field "prompt" is not accepted`},
		{name: "two files", body: file + file + end, want: `more than one "file" part`},
		{name: "no file", body: model + end, want: `no "file" file part`},
		{name: "an empty form", body: end, want: `no "file" file part`},
		{name: "a field repeated", body: file + model + model + end,
			want: `"model" appears more than 1 times`},
		{name: "a field too long", body: file + part(
			`Content-Disposition: form-data; name="model"`, strings.Repeat("m", 1025)) + end,
			want: `"model" is over 1024 bytes`},
		{name: "a field sent as a file", body: file + part(
			`Content-Disposition: form-data; name="model"; filename="m.txt"`, "x") + end,
			want: `"model" must be text`},
		{name: "a preamble", body: "hello\r\n" + file + end,
			want: "does not start with the multipart boundary"},
		{name: "an empty body", body: "", want: "does not start with the multipart boundary"},
		{name: "no closing boundary", body: file, want: "ends inside a part"},
		{name: "cut after a boundary", body: file + "--" + bnd,
			want: "without a closing boundary"},
		{name: "cut inside the headers", body: "--" + bnd + "\r\nContent-Disposition: form",
			want: "ends inside a part's headers"},
		{name: "the boundary inside a part", body: part(
			`Content-Disposition: form-data; name="file"`, "RIFF\r\n--"+bnd+"X") + end,
			want: "boundary occurs inside a part"},
		{name: "data after the closing boundary", body: file + end + "junk",
			want: "data follows the closing boundary"},
		{name: "a folded header", body: part("Content-Disposition: form-data;\r\n"+
			` name="file"`, "RIFF") + end, want: "folded part headers"},
		{name: "quoted-printable content", body: part(`Content-Disposition: form-data; `+
			`name="file"`+"\r\nContent-Transfer-Encoding: quoted-printable", "RIFF=41") + end,
			want: "Content-Transfer-Encoding"},
		{name: "no Content-Disposition", body: part("Content-Type: audio/wav", "RIFF") + end,
			want: "no Content-Disposition"},
		{name: "two Content-Dispositions", body: part(`Content-Disposition: form-data; `+
			`name="file"`+"\r\n"+`Content-Disposition: form-data; name="model"`, "x") + end,
			want: "more than one Content-Disposition"},
		{name: "not form-data", body: part(`Content-Disposition: attachment; name="file"`,
			"RIFF") + end, want: "not form-data"},
		{name: "a nameless part", body: part(`Content-Disposition: form-data`, "RIFF") + end,
			want: "no field name"},
		{name: "a malformed Content-Type", body: part(`Content-Disposition: form-data; `+
			`name="file"`+"\r\nContent-Type: audio/", "RIFF") + end,
			want: "Content-Type is malformed"},
		{name: "bare LF line ends", body: "--" + bnd + "\nContent-Disposition: form-data; " +
			`name="file"` + "\n\nRIFF\n--" + bnd + "--\n", want: "malformed"},
		{name: "a header without a colon", body: part("Content-Disposition form-data",
			"RIFF") + end, want: "part header is malformed"},
		{name: "a boundary over 70 characters", boundary: strings.Repeat("b", 71),
			body: "--" + strings.Repeat("b", 71) + "--\r\n", want: "boundary is malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, dir := spoolHarness(t, nil)
			up := h.countUpstream()
			b := tt.boundary
			if b == "" {
				b = bnd
			}
			resp, got := h.do(h.uploadRequest("/cartesia/stt", "multipart/form-data; boundary="+
				b, strings.NewReader(tt.body), int64(len(tt.body))))
			e := errorCode(t, got)
			if resp.StatusCode != 400 || e.Code != "bad_request" ||
				!strings.Contains(e.Message, tt.want) {
				t.Errorf("got %d %s, want 400 bad_request with %q", resp.StatusCode, got,
					tt.want)
			}
			up.sawNothing(t)
			checkSpoolGone(t, h, dir)
		})
	}
}

// TestUploadFormsFromRealClients: what browsers, the SDKs and curl send passes.
func TestUploadFormsFromRealClients(t *testing.T) {
	tests := []struct{ name, boundary, body string }{
		{"chromium", "----WebKitFormBoundaryx7Yq2kFfJ3vQ1ZpA",
			"------WebKitFormBoundaryx7Yq2kFfJ3vQ1ZpA\r\nContent-Disposition: form-data; " +
				"name=\"file\"; filename=\"r\u00e9sum\u00e9 \\\"1\\\".wav\"\r\n" +
				"Content-Type: audio/wav\r\n\r\nRIFF\r\n" +
				"------WebKitFormBoundaryx7Yq2kFfJ3vQ1ZpA\r\nContent-Disposition: form-data; " +
				"name=\"model\"\r\n\r\nink-whisper\r\n" +
				"------WebKitFormBoundaryx7Yq2kFfJ3vQ1ZpA--\r\n"},
		{"undici", "----formdata-undici-032411352436",
			"------formdata-undici-032411352436\r\nContent-Disposition: form-data; " +
				"name=\"file\"; filename=\"x.pcm\"\r\nContent-Type: application/octet-stream" +
				"\r\n\r\n\x00\x01\r\n------formdata-undici-032411352436\r\n" +
				"Content-Disposition: form-data; name=\"timestamp_granularities[]\"\r\n\r\n" +
				"word\r\n------formdata-undici-032411352436--"},
		{"a blob without a file name", "xyz", "--xyz\r\nContent-Disposition: form-data; " +
			"name=\"file\"\r\n\r\nRIFF\r\n--xyz--\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			up := h.countUpstream()
			resp, got := h.do(h.uploadRequest("/cartesia/stt",
				`multipart/form-data; boundary="`+tt.boundary+`"`, strings.NewReader(tt.body),
				int64(len(tt.body))))
			if resp.StatusCode != 200 || up.requests.Load() != 1 {
				t.Errorf("got %d %s; upstream saw %d requests", resp.StatusCode, got,
					up.requests.Load())
			}
		})
	}
}

// TestUploadSpoolIsReleasedOnEveryPath: a client that vanishes mid-upload, and a relay
// that aborts (the handler unwinds with a panic), leave no file and no reservation.
func TestUploadSpoolIsReleasedOnEveryPath(t *testing.T) {
	t.Run("client gone mid-upload", func(t *testing.T) {
		h, dir := spoolHarness(t, nil)
		up := h.countUpstream()
		conn := h.rawPost("/cartesia/stt", token.STT, fmt.Sprintf(
			"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n", 1<<20),
			"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n")
		_, _ = conn.Write(make([]byte, 400<<10))
		waitFor(t, "the upload to reach the disk", func() bool { return h.proxy.SpoolFiles() == 1 })
		_ = conn.Close()
		checkSpoolGone(t, h, dir)
		up.sawNothing(t)
	})

	t.Run("relay aborted after forwarding", func(t *testing.T) {
		h, dir := spoolHarness(t, nil)
		h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"type":"transcript",`)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		})
		body, ctype := pageForm(t, make([]byte, 300<<10), "model", "ink-whisper")
		resp, err := h.client.Do(h.uploadRequest("/cartesia/stt", ctype,
			bytes.NewReader(body), int64(len(body))))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Error("the cut answer ended cleanly")
		}
		if h.proxy.SpoolFiles() != 1 {
			t.Errorf("%d spool files, want 1", h.proxy.SpoolFiles())
		}
		checkSpoolGone(t, h, dir)
	})
}

// TestSlowUploadIsStillBounded: spooling keeps the upload deadlines: a pause longer than
// BodyTimeout, or an upload longer than UploadTimeout, ends in 408 with nothing sent
// upstream.
func TestSlowUploadIsStillBounded(t *testing.T) {
	tests := []struct {
		name          string
		pause, upload time.Duration
		trickle       bool
	}{
		{"a long pause", 100 * time.Millisecond, time.Minute, false},
		{"a steady trickle", 2 * time.Second, 300 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, dir := spoolHarness(t, func(c *proxy.Config) {
				c.BodyTimeout, c.UploadTimeout = tt.pause, tt.upload
			})
			up := h.countUpstream()
			conn := h.rawPost("/cartesia/stt", token.STT,
				"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n",
				"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFF")
			stop := make(chan struct{})
			defer close(stop)
			if tt.trickle {
				go func() {
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							if _, err := conn.Write([]byte{0}); err != nil {
								return
							}
						}
					}
				}()
			}

			resp, b := h.readRaw(conn, http.MethodPost, "/cartesia/stt")
			if resp.StatusCode != http.StatusRequestTimeout ||
				errorCode(t, b).Code != "request_timeout" {
				t.Errorf("got %d %s, want 408 request_timeout", resp.StatusCode, b)
			}
			up.sawNothing(t)
			checkSpoolGone(t, h, dir)
		})
	}
}

// TestUploadSpoolCaps: what uploads may hold is capped per user and in total; an upload
// over either cap is refused before upstream sees it, and the caps count a user's
// concurrent uploads together.
func TestUploadSpoolCaps(t *testing.T) {
	t.Run("per user", func(t *testing.T) {
		h, dir := spoolHarness(t, func(c *proxy.Config) { c.SpoolPerUser = 64 << 10 })
		up := h.countUpstream()
		body, ctype := pageForm(t, make([]byte, 100<<10), "model", "ink-whisper")
		resp, got := h.do(h.uploadRequest("/cartesia/stt", ctype, bytes.NewReader(body),
			int64(len(body))))
		if resp.StatusCode != 429 || errorCode(t, got).Code != "rate_limited" ||
			resp.Header.Get("Retry-After") == "" {
			t.Errorf("got %d %s, want 429 rate_limited with Retry-After", resp.StatusCode, got)
		}
		if !strings.Contains(h.logText(), `"reason":"upload_spool_user_cap"`) {
			t.Errorf("no security_rejected event:\n%s", h.logText())
		}
		up.sawNothing(t)
		checkSpoolGone(t, h, dir)
	})

	t.Run("in total", func(t *testing.T) {
		h, dir := spoolHarness(t, func(c *proxy.Config) { c.SpoolTotal = 64 << 10 })
		up := h.countUpstream()
		body, ctype := pageForm(t, make([]byte, 100<<10), "model", "ink-whisper")
		resp, got := h.do(h.uploadRequest("/cartesia/stt", ctype, bytes.NewReader(body),
			int64(len(body))))
		if resp.StatusCode != 503 || errorCode(t, got).Code != "unavailable" {
			t.Errorf("got %d %s, want 503 unavailable", resp.StatusCode, got)
		}
		up.sawNothing(t)
		checkSpoolGone(t, h, dir)
	})

	t.Run("concurrent uploads share the user's cap", func(t *testing.T) {
		h, dir := spoolHarness(t, func(c *proxy.Config) { c.SpoolPerUser = 180 << 10 })
		up := h.countUpstream()
		first, firstType := pageForm(t, make([]byte, 140<<10), "model", "ink-whisper")
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		go func() {
			resp, err := h.client.Do(h.uploadRequest("/cartesia/stt", firstType, pr,
				int64(len(first))))
			if err != nil {
				done <- -1
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		// The spooler reads in 64 KiB steps; 135 KiB sent lets it hold two of them.
		_, _ = pw.Write(first[:135<<10])
		waitFor(t, "the first upload to be held", func() bool {
			return h.proxy.SpoolInUse() >= 120<<10
		})

		second, secondType := pageForm(t, make([]byte, 60<<10), "model", "ink-whisper")
		resp, got := h.do(h.uploadRequest("/cartesia/stt", secondType,
			bytes.NewReader(second), int64(len(second))))
		if resp.StatusCode != 429 || errorCode(t, got).Code != "rate_limited" {
			t.Errorf("second upload: %d %s, want 429 rate_limited", resp.StatusCode, got)
		}
		if up.requests.Load() != 0 {
			t.Error("upstream was called while the first upload was incomplete")
		}

		_, _ = pw.Write(first[135<<10:])
		_ = pw.Close()
		if status := <-done; status != 200 {
			t.Errorf("first upload: %d, want 200", status)
		}
		if up.requests.Load() != 1 {
			t.Errorf("upstream saw %d requests, want the first upload only",
				up.requests.Load())
		}
		checkSpoolGone(t, h, dir)
	})
}

func TestUploadToTheOpenAIRouteDropsTheQuery(t *testing.T) {
	h := newHarness(t, nil)
	h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"error_code":"bad_file","title":"Bad","message":"no audio"}`)
	})
	body, ctype := pageForm(t, []byte("RIFF"), "model", "ink-whisper")
	resp, got := h.do(h.uploadRequest("/cartesia/audio/transcriptions?encoding=x&api_key=y",
		ctype, bytes.NewReader(body), int64(len(body))))
	if resp.StatusCode != 422 || errorCode(t, got).Code != "upstream_error" {
		t.Errorf("got %d %s, want the upstream's 422 as upstream_error", resp.StatusCode, got)
	}
	if up := h.upstreamSaw(); len(up) != 1 || up[0].Path != "/audio/transcriptions" ||
		up[0].RawQuery != "" {
		t.Errorf("upstream saw %+v", up)
	}
}
