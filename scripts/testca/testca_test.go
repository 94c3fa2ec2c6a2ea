package testca

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

func TestServerCertificateIsTrustedThroughTheCAOnly(t *testing.T) {
	f, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatalf("the written pair does not load: %v", err)
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	pool, err := f.Pool()
	if err != nil {
		t.Fatal(err)
	}
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := trusting.Get(srv.URL)
	if err != nil {
		t.Fatalf("a client trusting the CA failed: %v", err)
	}
	resp.Body.Close()

	// The system roots do not know this CA.
	plain := &http.Client{Transport: &http.Transport{}}
	if resp, err := plain.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("a client without the CA accepted the certificate")
	}

	info, err := os.Stat(f.Key)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
}

func TestEveryCallMakesANewCA(t *testing.T) {
	a, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := os.ReadFile(a.CA)
	pb, _ := os.ReadFile(b.CA)
	if string(pa) == string(pb) {
		t.Error("two calls wrote the same CA")
	}
}
