package emulator

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// maxTTSBody bounds a TTS request: a 10000-character transcript of 4-byte characters
// is 40 KiB, the other fields are small.
const maxTTSBody = 64 << 10

// ttsBytes answers POST /tts/bytes (reference §4.1): the tone code of the transcript,
// streamed with chunked encoding in 100 ms chunks, in a raw or WAV container.
//
// Limitation: save:true returns a Cartesia-File-ID header, but the emulator stores
// nothing; the id cannot be fetched later.
func (e *Emulator) ttsBytes(c *call) {
	req, t, ok := c.readTTS()
	if !ok {
		return
	}
	save, _, perr := req.boolean("save")
	if perr != nil {
		c.failWith(perr)
		return
	}

	sig := tonecode.NewSignal(t.Transcript, t.SampleRate)
	var header []byte
	h := c.w.Header()
	if t.Container == "wav" {
		var err error
		if header, err = audio.WAVHeader(t.Encoding, t.SampleRate, sig.Len()); err != nil {
			c.fail(http.StatusInternalServerError, codeInternal, "Internal error",
				"the emulator could not build the WAV header")
			return
		}
		h.Set("Content-Type", "audio/wav")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	if save {
		h.Set("Cartesia-File-ID", newUUID())
	}
	c.logAttrs = append(c.logAttrs, slog.String("model", t.ModelID),
		slog.String("output", t.Container+"/"+string(t.Encoding)),
		slog.Int("sample_rate", t.SampleRate), slog.Int("chars", len([]rune(t.Transcript))))

	c.w.WriteHeader(http.StatusOK)
	write := func(p []byte) error {
		if _, err := c.w.Write(p); err != nil {
			return err
		}
		// A writer that cannot flush (some middleware) still gets the whole body.
		if err := http.NewResponseController(c.w).Flush(); err != nil &&
			!errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}

	err := func() error {
		if header != nil {
			if err := write(header); err != nil {
				return err
			}
		}
		if err := e.streamAudio(c.r.Context(), sig, t.Encoding, t.Volume, write); err != nil {
			return err
		}
		if t.Container == "wav" && audio.WAVPadding(t.Encoding, sig.Len()) == 1 {
			return write([]byte{0})
		}
		return nil
	}()
	if err != nil {
		// The status is already sent; all that is left is to stop and say so in the log.
		c.logAttrs = append(c.logAttrs, slog.Bool("aborted", true),
			slog.String("abort_reason", abortReason(err)))
	}
}

// abortReason names why a stream stopped early, for logs.
func abortReason(err error) string {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "request context ended"
	}
	return "write failed"
}
