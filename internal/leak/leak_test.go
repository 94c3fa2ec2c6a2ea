package leak

import "testing"

// TestSharesRun: runs of Run bytes of any form count, shorter ones do not.
func TestSharesRun(t *testing.T) {
	forms := Forms("abc def/ghijklmnopqrstuvwxyz")
	if len(forms) != 2 {
		t.Fatalf("forms %q, want the secret and its escaped form", forms)
	}
	for s, want := range map[string]bool{
		"xx" + forms[0][2:2+Run] + "yy":   true,
		"xx" + forms[1][1:1+Run] + "yy":   true,
		"xx" + forms[0][2:2+Run-1] + "yy": false,
		"":                                false,
	} {
		if got := SharesRun(s, forms...); got != want {
			t.Errorf("SharesRun(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestFormsAndSearches: empty secrets have no forms; In and InString find any form.
func TestFormsAndSearches(t *testing.T) {
	if f := Forms("", ""); f != nil {
		t.Fatalf("Forms of nothing = %q, want nil", f)
	}
	forms := Forms("a/b", "plain")
	if len(forms) != 3 {
		t.Fatalf("forms %q, want a/b, its escaped form and plain", forms)
	}
	needles := Needles(forms)
	for text, want := range map[string]bool{"x a%2Fb y": true, "xplainy": true, "a b": false} {
		if In([]byte(text), needles) != want || InString(text, forms) != want {
			t.Errorf("%q: In %v, InString %v, want %v", text, In([]byte(text), needles),
				InString(text, forms), want)
		}
	}
}

func BenchmarkIn(b *testing.B) {
	needles := Needles(Forms(string(make([]byte, 290))))
	msg := make([]byte, 16<<10)
	for i := range msg {
		msg[i] = 'a'
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		In(msg, needles)
	}
}
