package main

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpoolDirFlagBeatsEnvironment(t *testing.T) {
	c, err := parseConfig(nil, envOf(nil), io.Discard)
	if err != nil || c.SpoolDir != "" {
		t.Fatalf("default SpoolDir %q, %v; want empty (the system temp dir)", c.SpoolDir, err)
	}
	env := envOf(map[string]string{"SPOOL_DIR": "/from/env"})
	if c, _ := parseConfig(nil, env, io.Discard); c.SpoolDir != "/from/env" {
		t.Errorf("SPOOL_DIR gave %q", c.SpoolDir)
	}
	if c, _ := parseConfig([]string{"-spool-dir", "/from/flag"}, env, io.Discard); c.SpoolDir !=
		"/from/flag" {
		t.Errorf("-spool-dir gave %q", c.SpoolDir)
	}
}

func TestCheckSpoolDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := checkSpoolDir(""); err != nil {
		t.Errorf("empty SPOOL_DIR: %v", err)
	}
	if err := checkSpoolDir(dir); err != nil {
		t.Errorf("a writable directory: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the probe left files behind: %v", entries)
	}

	for _, tt := range []struct{ dir, want string }{
		{filepath.Join(dir, "missing"), "does not exist"},
		{file, "not a directory"},
	} {
		err := checkSpoolDir(tt.dir)
		if err == nil || !strings.Contains(err.Error(), "SPOOL_DIR") ||
			!strings.Contains(err.Error(), tt.want) {
			t.Errorf("checkSpoolDir(%q) = %v, want an error naming SPOOL_DIR: %s", tt.dir,
				err, tt.want)
		}
	}

	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "read-only")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if err := checkSpoolDir(ro); err == nil || !strings.Contains(err.Error(), "writable") {
			t.Errorf("a read-only directory: %v", err)
		}
	}
}

// TestStartRefusesABadSpoolDir: the start fails before anything listens, naming the
// variable.
func TestStartRefusesABadSpoolDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	var out, errOut bytes.Buffer
	err := run(context.Background(), nil, envOf(map[string]string{"ADDR": "127.0.0.1:0",
		"SPOOL_DIR": missing}), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "SPOOL_DIR") {
		t.Errorf("run with a missing SPOOL_DIR: %v", err)
	}
}

// TestServerSpoolsUploadsInSPOOL_DIR starts the real server with its emulator and a
// spool directory, then takes the directory away: an upload too large for memory now
// fails to spool (503 unavailable, logged), which shows that SPOOL_DIR is where the
// proxy spools, while a small upload, held in memory, still goes through.
func TestServerSpoolsUploadsInSPOOL_DIR(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	base, _, stderr := started(t, map[string]string{"DEMO_PASSWORD": "CANARYPW",
		"SPOOL_DIR": dir})
	resp := call(t, base, "POST", "/api/login", `{"username":"demo","password":"CANARYPW"}`,
		nil)
	cookies := resp.Cookies()
	resp = call(t, base, "POST", "/api/token", `{"grant":"stt"}`, cookies)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mint stt: %d", resp.StatusCode)
	}
	cookies = append(cookies, resp.Cookies()...)

	// upload sends a form with a size-byte file. err is set when the connection was cut
	// before an answer arrived: a server that answers before reading the whole body
	// closes the connection, which can reset it under the client's feet.
	upload := func(size int) (status int, err error) {
		t.Helper()
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		_ = mw.WriteField("model", "ink-whisper")
		fw, _ := mw.CreateFormFile("file", "clip.wav")
		_, _ = fw.Write(bytes.Repeat([]byte{0}, size))
		_ = mw.Close()
		req, _ := http.NewRequest("POST", base+"/cartesia/stt", &body)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("X-CSRF", "1")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if status, err := upload(1 << 20); err == nil && status != http.StatusServiceUnavailable {
		t.Errorf("a 1 MiB upload with SPOOL_DIR gone: %d, want 503", status)
	}
	// The event is logged before the answer, so it is there however the answer fared.
	if !strings.Contains(stderr.String(), "upload_spool_failed") ||
		!strings.Contains(stderr.String(), dir) {
		t.Errorf("no upload_spool_failed event naming SPOOL_DIR:\n%s", stderr.String())
	}
	if status, err := upload(1 << 10); err != nil || status == http.StatusServiceUnavailable {
		t.Errorf("a 1 KiB upload, held in memory, failed too: %d %v", status, err)
	}
}
