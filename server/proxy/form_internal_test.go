package proxy

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

// wideForm admits many parts, so that the part cap is what stops a long form.
var wideForm = Form{File: "file", Fields: map[string]int{"x": 1000, "model": 1}}

func TestCopyFormPartCap(t *testing.T) {
	form := func(parts int) string {
		s := "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFF\r\n"
		for range parts - 1 {
			s += "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n"
		}
		return s + "--b--\r\n"
	}
	if _, err := copyForm(io.Discard, strings.NewReader(form(maxFormParts)), "b",
		wideForm); err != nil {
		t.Errorf("%d parts: %v", maxFormParts, err)
	}
	_, err := copyForm(io.Discard, strings.NewReader(form(20_000)), "b", wideForm)
	var fe *formError
	if !errors.As(err, &fe) || !strings.Contains(fe.msg, "more than 16 parts") {
		t.Errorf("20,000 parts: %v", err)
	}
}

// TestCopyFormFindsBoundariesAcrossReads: content that straddles the parser's buffer,
// with boundary look-alikes at every offset, arrives whole.
func TestCopyFormFindsBoundariesAcrossReads(t *testing.T) {
	lookalike := []byte("\r\n--bo\r\n-\r\n--boundar")
	content := bytes.Repeat(lookalike, (3*formBuffer)/len(lookalike)+7)
	var in bytes.Buffer
	mw := multipart.NewWriter(&in)
	_ = mw.SetBoundary("boundary")
	fw, _ := mw.CreateFormFile("file", "a.wav")
	_, _ = fw.Write(content)
	_ = mw.WriteField("model", "ink-whisper")
	_ = mw.Close()

	var out bytes.Buffer
	ctype, err := copyForm(&out, &jagged{r: &in}, "boundary", wideForm)
	if err != nil {
		t.Fatal(err)
	}
	parts := readParts(t, ctype, out.Bytes())
	if len(parts) != 2 || parts[0].value != string(content) || parts[1].value != "ink-whisper" {
		t.Errorf("parts differ: %d parts", len(parts))
	}
}

// jagged returns reads of varying sizes, to move boundaries around the parser's buffer
// edges.
type jagged struct {
	r io.Reader
	i int
}

func (j *jagged) Read(p []byte) (int, error) {
	j.i++
	n := min(len(p), 1+j.i%4099)
	return j.r.Read(p[:n])
}

type formPart struct{ name, filename, value string }

func readParts(t testing.TB, ctype string, body []byte) []formPart {
	t.Helper()
	_, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		t.Fatal(err)
	}
	var out []formPart
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("the proxy's own output does not parse: %v", err)
		}
		v, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("the proxy's own output does not parse: %v", err)
		}
		out = append(out, formPart{p.FormName(), p.FileName(), string(v)})
	}
}

// FuzzCopyForm: whatever the client sends, a form the proxy accepts is one the standard
// library reads the same way (the same parts, names and contents, in order), and the
// proxy's re-encoding reads back to those parts too. So upstream, whichever parser it
// uses, sees what the proxy checked.
func FuzzCopyForm(f *testing.F) {
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n" +
		"Content-Type: audio/wav\r\n\r\nRIFF\r\n--b\r\nContent-Disposition: form-data; " +
		"name=\"model\"\r\n\r\nink-whisper\r\n--b--\r\n"))
	f.Add([]byte("--b  \r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\r\n--bx" +
		"\r\n--b--"))
	f.Add([]byte("--b\r\ncontent-disposition: form-data; name=file; filename*=UTF-8''%e2%82%ac" +
		"\r\n\r\n--b\r\n\r\n--b--\r\n \r\n"))
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"x\"\r\nX: \r\n\r\n--b--"))
	// Found by this fuzz test: a bare CR closing the boundary line, and inside a header.
	f.Add([]byte("--b\r\nContent-Disposition:form-dAtA;nAme=\"file\"\r\n\r\n--b--\r"))
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"file\";x=\"0\"\r\r\n\r\n--b--"))

	f.Fuzz(func(t *testing.T, body []byte) {
		var out bytes.Buffer
		ctype, err := copyForm(&out, bytes.NewReader(body), "b", wideForm)
		if err != nil {
			var fe *formError
			if !errors.As(err, &fe) {
				t.Fatalf("not a form error: %v", err)
			}
			return
		}

		got := readParts(t, ctype, out.Bytes())
		var std []formPart
		mr := multipart.NewReader(bytes.NewReader(body), "b")
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("accepted a form the standard library refuses: %v", err)
			}
			v, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("accepted a form the standard library refuses: %v", err)
			}
			std = append(std, formPart{p.FormName(), p.FileName(), string(v)})
		}
		if len(got) != len(std) {
			t.Fatalf("%d parts re-encoded, the standard library reads %d", len(got),
				len(std))
		}
		for i := range got {
			if got[i].name != std[i].name || got[i].value != std[i].value {
				t.Fatalf("part %d: re-encoded %q=%q, the standard library reads %q=%q", i,
					got[i].name, got[i].value, std[i].name, std[i].value)
			}
			if got[i].name == wideForm.File && got[i].filename == "" {
				t.Fatalf("the file part lost its file name")
			}
		}
	})
}
