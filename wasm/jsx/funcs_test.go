//go:build js && wasm

package jsx

import (
	"context"
	"testing"

	"github.com/hack-pad/safejs"
)

func TestFuncOfCountsLiveFunctionsUntilReleased(t *testing.T) {
	before := LiveFuncs()

	f, err := FuncOf(func(safejs.Value, []safejs.Value) any { return nil })
	if err != nil {
		t.Fatal(err)
	}
	during := LiveFuncs()
	f.Release()
	f.Release() // a second release changes nothing

	if during != before+1 || LiveFuncs() != before {
		t.Fatalf("live funcs %d -> %d -> %d; want +1 then back", before, during, LiveFuncs())
	}
}

func TestAwaitAndPromiseReleaseTheirFunctions(t *testing.T) {
	before := LiveFuncs()

	p, err := Promise(func() (any, error) { return "ok", nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Await(context.Background(), p); err != nil {
		t.Fatal(err)
	}

	if after := LiveFuncs(); after != before {
		t.Fatalf("live funcs %d after a settled Await, want %d", after, before)
	}
}

func TestFormCarriesFieldsAndABlob(t *testing.T) {
	form, err := NewForm()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := Blob([]byte("RIFF"), "audio/wav")
	if err != nil {
		t.Fatal(err)
	}

	if err := form.SetBlob("file", blob, "a.wav"); err != nil {
		t.Fatal(err)
	}
	if err := form.Set("model", "ink-whisper"); err != nil {
		t.Fatal(err)
	}

	model, _ := form.Value().Call("get", "model")
	file, _ := form.Value().Call("get", "file")
	name, _ := file.Get("name")
	size, _ := file.Get("size")
	if m, _ := model.String(); m != "ink-whisper" {
		t.Fatalf("model = %q", m)
	}
	if n, _ := name.String(); n != "a.wav" || !IsBlob(file) {
		t.Fatalf("file name = %q, blob %v", n, IsBlob(file))
	}
	if s, _ := size.Int(); s != 4 {
		t.Fatalf("file size = %d, want 4", s)
	}
}
