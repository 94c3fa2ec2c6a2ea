package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Multipart limits. A batch transcription form is one file and three short fields; these
// bounds admit that with room to spare and refuse, while reading, the forms that cost the
// server or upstream work for nothing (thousands of parts, megabytes of part headers).
const (
	// maxFormParts caps the parts of one form.
	maxFormParts = 16
	// maxPartHeader caps the header block of one part, line ends included.
	maxPartHeader = 8 << 10
	// maxFieldValue caps a text field's value: model names, language codes and "word".
	maxFieldValue = 1 << 10
	// maxFileName caps the file name passed upstream (a common file system limit).
	maxFileName = 255
	// formBuffer is the parser's read buffer; it must exceed maxPartHeader, so that a
	// header line that fills it is over the limit.
	formBuffer = 64 << 10
)

// formError is a multipart body that breaks the format or the route's rules. Its text is
// the message the client gets with 400 bad_request.
type formError struct{ msg string }

func (e *formError) Error() string { return e.msg }

func badForm(format string, args ...any) error {
	return &formError{msg: fmt.Sprintf(format, args...)}
}

// copyForm reads a multipart/form-data body with boundary from src, checks it against
// the route's form rules as it reads, and writes a canonical re-encoding of it to dst: the
// same parts in the same order under a fresh boundary, each with only a
// Content-Disposition (and, for the file, the Content-Type it declared). It returns the
// Content-Type of the re-encoded body.
//
// Re-encoding means upstream parses only what the proxy wrote, never the client's bytes:
// nothing the client adds (a preamble, extra part headers, an epilogue, an odd
// transfer encoding) can make upstream read the form differently from the proxy. The
// parser is strict accordingly: the body must begin with the boundary, lines end in CRLF,
// headers are not folded, the boundary never occurs inside a part, and nothing but
// blank space follows the closing boundary.
//
// Errors are *formError for a form to refuse, *spoolIOError or a spool refusal from dst,
// or src's own error (too large, too slow, gone).
func copyForm(dst io.Writer, src io.Reader, boundary string, rules Form) (string, error) {
	if !validBoundary(boundary) {
		return "", badForm("the multipart boundary is malformed")
	}
	f := &formCopier{br: bufio.NewReaderSize(src, formBuffer),
		delim: []byte("\r\n--" + boundary), rules: rules, out: multipart.NewWriter(dst),
		seen: map[string]int{}}

	if err := f.start(); err != nil {
		return "", err
	}
	for {
		last, err := f.afterBoundary()
		if err != nil {
			return "", err
		}
		if last {
			break
		}
		if err := f.part(); err != nil {
			return "", err
		}
	}
	if err := f.epilogue(); err != nil {
		return "", err
	}
	if f.files == 0 {
		return "", badForm("the form has no %q file part", rules.File)
	}
	if err := f.out.Close(); err != nil {
		return "", err
	}
	return f.out.FormDataContentType(), nil
}

// formCopier is the state of one copyForm.
type formCopier struct {
	br    *bufio.Reader
	delim []byte // CRLF "--" boundary: what ends a part
	rules Form
	out   *multipart.Writer

	parts, files int
	seen         map[string]int
}

// start reads the first boundary, which must open the body.
func (f *formCopier) start() error {
	first := f.delim[2:]
	got, err := f.br.Peek(len(first))
	switch {
	case bytes.Equal(got, first):
		_, _ = f.br.Discard(len(first))
		return nil
	case err != nil && !errors.Is(err, io.EOF):
		return err
	}
	return badForm("the body does not start with the multipart boundary")
}

// afterBoundary reads what follows a boundary: "--" ends the form (last); otherwise
// optional blank space and CRLF open the next part.
func (f *formCopier) afterBoundary() (last bool, err error) {
	next, err := f.br.Peek(2)
	if len(next) < 2 {
		return false, f.endedEarly(err, "the body ends without a closing boundary")
	}
	if string(next) == "--" {
		_, _ = f.br.Discard(2)
		return true, nil
	}

	line, err := f.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return false, badForm("a boundary line is malformed")
	case err != nil:
		return false, f.endedEarly(err, "the body ends without a closing boundary")
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) ||
		len(bytes.TrimLeft(line[:len(line)-2], " \t")) != 0 {
		return false, badForm("the boundary occurs inside a part, or a boundary line is " +
			"malformed")
	}
	return false, nil
}

// part reads one part: its headers, then its content up to the next boundary, and
// writes it out if the rules admit it.
func (f *formCopier) part() error {
	if f.parts++; f.parts > maxFormParts {
		return badForm("the form has more than %d parts", maxFormParts)
	}
	h, err := f.header()
	if err != nil {
		return err
	}

	if h.name == f.rules.File {
		if f.files++; f.files > 1 {
			return badForm("the form has more than one %q part", f.rules.File)
		}
		return f.copyFile(h)
	}

	most := f.rules.Fields[h.name]
	switch {
	case most == 0:
		return badForm("the form field %s is not accepted here", quoteName(h.name))
	case h.hasFilename:
		return badForm("the form field %s must be text, not a file", quoteName(h.name))
	}
	if f.seen[h.name]++; f.seen[h.name] > most {
		return badForm("the form field %s appears more than %d times", quoteName(h.name),
			most)
	}

	w, err := f.out.CreatePart(textproto.MIMEHeader{"Content-Disposition": {
		fmt.Sprintf(`form-data; name="%s"`, h.name)}})
	if err != nil {
		return err
	}
	if _, err := f.content(w, maxFieldValue); err != nil {
		if errors.Is(err, errFieldTooLong) {
			return badForm("the form field %s is over %d bytes", quoteName(h.name),
				maxFieldValue)
		}
		return err
	}
	return nil
}

// copyFile writes the file part. It always gets a file name (upstreams tell a file from
// a text field by it) and keeps a well-formed Content-Type.
func (f *formCopier) copyFile(h partHeader) error {
	name := cleanFileName(h.filename)
	disp := fmt.Sprintf(`form-data; name="%s"; filename="%s"`, h.name, name)
	mh := textproto.MIMEHeader{"Content-Disposition": {disp}}
	if h.contentType != "" {
		mh.Set("Content-Type", h.contentType)
	}
	w, err := f.out.CreatePart(mh)
	if err != nil {
		return err
	}
	_, err = f.content(w, -1)
	return err
}

// errFieldTooLong is content over its limit.
var errFieldTooLong = errors.New("proxy: form field over its limit")

// content copies a part's content to w up to the next boundary, which it consumes; at
// most limit bytes when limit is not negative. The boundary is found across reads: each
// step passes on all but the last len(delim)-1 bytes of what is buffered, which may
// begin a boundary.
func (f *formCopier) content(w io.Writer, limit int64) (int64, error) {
	// A part without a body: the CRLF that ended the headers is also the boundary's
	// (RFC 2046 5.1.1), so the boundary follows at once. Parsers agree on this reading;
	// taking "--boundary" as content here would make a form mean two things.
	dash := f.delim[2:]
	if b, _ := f.br.Peek(len(dash)); bytes.Equal(b, dash) {
		_, _ = f.br.Discard(len(dash))
		return 0, nil
	}

	var n int64
	emit := func(b []byte) error {
		if n += int64(len(b)); limit >= 0 && n > limit {
			return errFieldTooLong
		}
		_, err := w.Write(b)
		return err
	}
	for {
		buf, err := f.br.Peek(formBuffer)
		if i := bytes.Index(buf, f.delim); i >= 0 {
			if err := emit(buf[:i]); err != nil {
				return n, err
			}
			_, _ = f.br.Discard(i + len(f.delim))
			return n, nil
		}
		if err != nil {
			return n, f.endedEarly(err, "the body ends inside a part")
		}
		safe := len(buf) - (len(f.delim) - 1)
		if err := emit(buf[:safe]); err != nil {
			return n, err
		}
		_, _ = f.br.Discard(safe)
	}
}

// epilogue reads the rest of the body after the closing boundary: blank space on the
// boundary's line, then the end, or CRLF and blank space only. It is read to its end so
// that the size limit covers it and the connection stays usable.
func (f *formCopier) epilogue() error {
	for {
		b, err := f.br.Peek(1)
		if len(b) == 0 {
			return endOrErr(err)
		}
		if b[0] != ' ' && b[0] != '\t' {
			break
		}
		_, _ = f.br.Discard(1)
	}
	if b, err := f.br.Peek(2); string(b) != "\r\n" {
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return badForm("data follows the closing boundary")
	}
	_, _ = f.br.Discard(2)

	for {
		buf, err := f.br.Peek(formBuffer)
		if len(bytes.TrimLeft(buf, " \t\r\n")) != 0 {
			return badForm("data follows the closing boundary")
		}
		_, _ = f.br.Discard(len(buf))
		if err != nil {
			return endOrErr(err)
		}
	}
}

// endOrErr is nil for the end of the body, else err.
func endOrErr(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// endedEarly is err from src, or the form error msg when the body simply ended.
func (f *formCopier) endedEarly(err error, msg string) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return badForm("%s", msg)
	}
	return err
}

// partHeader is what the proxy keeps of a part's headers.
type partHeader struct {
	name        string
	filename    string
	hasFilename bool
	// contentType is the declared media type, re-formatted; empty when none was given.
	contentType string
}

// header reads a part's header block, at most maxPartHeader bytes, whole, and then
// reads its fields. Content-Disposition must say form-data with a name; Content-Type, if
// present, must parse; a Content-Transfer-Encoding other than the identity ones is
// refused (the content would mean something else than its bytes); other headers are
// dropped.
func (f *formCopier) header() (partHeader, error) {
	var fields [][2]string
	total := 0
	for {
		line, err := f.br.ReadSlice('\n')
		total += len(line)
		switch {
		case total > maxPartHeader || errors.Is(err, bufio.ErrBufferFull):
			return partHeader{}, badForm("a part's headers are over %d bytes", maxPartHeader)
		case err != nil:
			return partHeader{}, f.endedEarly(err, "the body ends inside a part's headers")
		case !bytes.HasSuffix(line, []byte("\r\n")):
			return partHeader{}, badForm("a part header line does not end in CRLF")
		}
		line = line[:len(line)-2]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return partHeader{}, badForm("folded part headers are not accepted")
		}
		key, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validHeaderName(key) || !validHeaderValue(value) {
			return partHeader{}, badForm("a part header is malformed")
		}
		fields = append(fields, [2]string{textproto.CanonicalMIMEHeaderKey(string(key)),
			strings.Trim(string(value), " \t")})
	}

	var h partHeader
	var disposition, ctype int
	for _, kv := range fields {
		switch v := kv[1]; kv[0] {
		case "Content-Disposition":
			if disposition++; disposition > 1 {
				return h, badForm("a part has more than one Content-Disposition")
			}
			if err := h.setDisposition(v); err != nil {
				return h, err
			}
		case "Content-Type":
			if ctype++; ctype > 1 {
				return h, badForm("a part has more than one Content-Type")
			}
			mt, params, err := mime.ParseMediaType(v)
			if err != nil {
				return h, badForm("a part's Content-Type is malformed")
			}
			h.contentType = mime.FormatMediaType(mt, params)
			if h.contentType == "" {
				h.contentType = octetStream
			}
		case "Content-Transfer-Encoding":
			switch strings.ToLower(v) {
			case "binary", "8bit", "7bit":
			default:
				return h, badForm("Content-Transfer-Encoding %s is not accepted",
					quoteName(v))
			}
		}
	}
	if disposition == 0 {
		return h, badForm("a part has no Content-Disposition")
	}
	return h, nil
}

// setDisposition reads a Content-Disposition value into h.
func (h *partHeader) setDisposition(v string) error {
	disp, params, err := mime.ParseMediaType(v)
	switch {
	case err != nil:
		return badForm("a part's Content-Disposition is malformed")
	case disp != "form-data":
		return badForm("a part's Content-Disposition is not form-data")
	case params["name"] == "":
		return badForm("a part has no field name")
	}
	h.name = params["name"]
	h.filename, h.hasFilename = params["filename"]
	return nil
}

// validBoundary reports whether b is a boundary RFC 2046 5.1.1 allows: 1 to 70 of its
// characters, not ending in a space.
func validBoundary(b string) bool {
	if len(b) == 0 || len(b) > 70 || b[len(b)-1] == ' ' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("'()+_,-./:=? ", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validHeaderName reports whether k is an RFC 9110 token.
func validHeaderName(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validHeaderValue reports whether v holds no control character but tab (RFC 9110 5.5).
func validHeaderValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// cleanFileName makes a client's file name safe to write in a quoted header parameter:
// valid UTF-8 without control characters, quotes or backslashes, at most maxFileName
// bytes (keeping the end, where the extension is), and "audio" when nothing is left.
func cleanFileName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r == utf8.RuneError || unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	for len(s) > maxFileName {
		_, size := utf8.DecodeRuneInString(s)
		s = s[size:]
	}
	if s == "" {
		return "audio"
	}
	return s
}

// quoteName quotes a client-chosen name for an error message, cut to 64 bytes.
func quoteName(s string) string {
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "") + "..."
	}
	return fmt.Sprintf("%q", s)
}
