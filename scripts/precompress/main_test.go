package main

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/andybalholm/brotli"
)

func TestCompressFileWritesDecodableTwin(t *testing.T) {
	// Half compressible text, half random bytes: both kinds must survive the round trip.
	var want bytes.Buffer
	for range 2000 {
		want.WriteString("voxgate wasm bundle ")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 40000 {
		want.WriteByte(byte(rng.Uint32()))
	}

	name := filepath.Join(t.TempDir(), "bundle.wasm")
	if err := os.WriteFile(name, want.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	in, out, err := compressFile(name, 5)
	if err != nil {
		t.Fatalf("compressFile: %v", err)
	}
	if in != int64(want.Len()) {
		t.Errorf("input size = %d, want %d", in, want.Len())
	}

	twin, err := os.ReadFile(name + ".br")
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(twin)) != out {
		t.Errorf("reported output size %d, file has %d bytes", out, len(twin))
	}
	if len(twin) >= want.Len() {
		t.Errorf("twin is %d bytes, not smaller than the %d-byte input", len(twin), want.Len())
	}
	got, err := io.ReadAll(brotli.NewReader(bytes.NewReader(twin)))
	if err != nil {
		t.Fatalf("decompress twin: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("decompressed twin differs from the input")
	}

	// No temporary files are left behind next to the output.
	entries, err := os.ReadDir(filepath.Dir(name))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("folder holds %d entries, want the input and its twin only", len(entries))
	}
}

func TestCompressFileReportsMissingInput(t *testing.T) {
	_, _, err := compressFile(filepath.Join(t.TempDir(), "absent.wasm"), 5)
	if err == nil {
		t.Fatal("compressFile of a missing file succeeded")
	}
}
