package emulator

// WSS /stt/turns/websocket (reference §5.2): speech to text with turn detection. The
// emulator hears audio exactly like /stt/websocket (see stt_ws.go) and reports turns:
//
//   - connected once, when the connection opens;
//   - turn.start when the energy detector hears speech begin (for tone-coded audio:
//     when the frame's sync preamble starts);
//   - turn.update whenever a tone-code frame has been decoded, with the transcript of
//     the turn so far (cumulative);
//   - turn.eager_end after 300 ms of silence, turn.resume if speech comes back before
//     the turn ends, turn.end after 700 ms of silence with the turn's transcript;
//   - on {"type":"close"}: turn.end for an open turn, then close 1000.
//
// A turn without any tone code ends with transcript "" and the emulator's extra field
// (see stt_ws.go). Every event carries the connection's request_id and a transcript.
//
// Limitation: the turn thresholds (turn_start_threshold, turn_eager_end_threshold,
// turn_end_threshold, turn_end_timeout_ms, and the same fields of a config message) are
// validated and then ignored: the emulator's turn detector measures silence, not the
// probabilities these thresholds describe, so its timings are fixed.

import (
	"log/slog"
	"net/url"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// Turn timings, as silence after the last speech.
const (
	sttEagerSilence   = 300 * time.Millisecond
	sttTurnEndSilence = 700 * time.Millisecond
)

// sttTurnRange is one turn-detection setting: its query name, its name in a config
// message, and its documented range (reference §5.2).
type sttTurnRange struct {
	query, field string
	min, max     float64
	integer      bool
}

var sttTurnRanges = []sttTurnRange{
	{"turn_start_threshold", "start_threshold", 0.5, 0.9, false},
	{"turn_eager_end_threshold", "eager_end_threshold", 0.3, 0.6, false},
	{"turn_end_threshold", "end_threshold", 0.05, 0.5, false},
	{"turn_end_timeout_ms", "end_timeout_ms", 640, 11200, true},
}

// check validates one value of the setting; name is how the client spelled it.
func (r sttTurnRange) check(name string, v float64) *apiError {
	if !(v >= r.min && v <= r.max) || (r.integer && v != float64(int64(v))) {
		kind := "a number"
		if r.integer {
			kind = "an integer"
		}
		return badRequest("%s must be %s from %g to %g, got %g", name, kind, r.min, r.max, v)
	}
	return nil
}

// parseSTTTurns validates the query of /stt/turns/websocket.
func parseSTTTurns(q url.Values) (*sttParams, *apiError) {
	p := &sttParams{Model: q.Get("model"), MinVolume: sttDefaultVolume}
	if err := sttModel(p.Model, true); err != nil {
		return nil, err
	}
	var err *apiError
	if p.Encoding, p.SampleRate, err = sttAudioParams(q, true); err != nil {
		return nil, err
	}
	if p.Language, err = sttLanguage(q.Get("language")); err != nil {
		return nil, err
	}
	if p.Language != "en" {
		return nil, badRequest("turn detection is English only; language must be \"en\"")
	}
	if p.Keyterms, err = sttKeyterms(q); err != nil {
		return nil, err
	}

	for _, r := range sttTurnRanges {
		if !q.Has(r.query) {
			continue
		}
		v, perr := strconv.ParseFloat(q.Get(r.query), 64)
		if perr != nil {
			return nil, badRequest("%s must be a number, got %s", r.query, quote(q.Get(r.query)))
		}
		if err := r.check(r.query, v); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// parseTurnConfig validates a {"type":"config","turn":{...}} message.
func parseTurnConfig(msg object) *apiError {
	turn, present, err := msg.object("turn")
	switch {
	case err != nil:
		return err
	case !present:
		return badRequest(`a config message needs "turn", for example ` +
			`{"type":"config","turn":{"end_threshold":0.2}}`)
	}
	for _, r := range sttTurnRanges {
		v, present, err := turn.number(r.field)
		switch {
		case err != nil:
			return err
		case !present:
			continue
		}
		if err := r.check(turn.name(r.field), v); err != nil {
			return err
		}
	}
	return nil
}

// sttTurnEvent is a turn.* message.
type sttTurnEvent struct {
	Type       string   `json:"type"`
	RequestID  string   `json:"request_id"`
	Transcript string   `json:"transcript"`
	Emulator   *sttNote `json:"emulator,omitempty"`
}

// sttTurns serves WSS /stt/turns/websocket.
func (e *Emulator) sttTurns(c *call) {
	s, p := e.sttOpen(c, parseSTTTurns)
	if s == nil {
		return
	}
	defer s.finish()
	if p == nil {
		return
	}

	ts := &sttTurnStream{s: s, l: newSTTListener(p.Encoding, p.SampleRate, p.MinVolume)}
	if s.send(sttSignal{Type: "connected", RequestID: c.id}) != nil {
		return
	}
	ts.run()
	c.logAttrs = append(c.logAttrs, slog.Int("turns", ts.turns),
		slog.Float64("audio_s", sttRound(ts.l.seconds(ts.l.total()))))
}

// sttTurnStream is the state of one turns connection.
type sttTurnStream struct {
	s *sttConn
	l *sttListener

	open  bool     // a turn has started and not ended
	eager bool     // turn.eager_end sent, turn.end not yet
	heard sttHeard // in the open turn
	turns int
}

// run serves the client's messages until the stream ends.
func (ts *sttTurnStream) run() {
	for {
		m, ok := ts.s.receive()
		if !ok {
			return
		}

		if m.typ == websocket.MessageBinary {
			if ts.hear(ts.l.feed(m.data)) != nil || ts.silence() != nil {
				return
			}
			continue
		}

		msg, perr := parseObject(m.data)
		var kind string
		if perr == nil {
			kind, _, perr = msg.str("type")
		}
		switch {
		case perr != nil:
			ts.s.fail(perr)
			return
		case kind == "close":
			ts.closeStream()
			return
		case kind == "config":
			if err := parseTurnConfig(msg); err != nil {
				ts.s.fail(err)
				return
			}
		default:
			ts.s.fail(badRequest(`unknown message type %s: send audio as binary messages, `+
				`and {"type":"config",...} or {"type":"close"} as text`, quote(kind)))
			return
		}
	}
}

// hear turns listener events into turn.start, turn.resume and turn.update.
func (ts *sttTurnStream) hear(events []sttEvent) error {
	for _, ev := range events {
		var kind string
		switch {
		case ev.kind == sttSpeechStarted && !ts.open:
			ts.open, ts.heard = true, sttHeard{}
			kind = "turn.start"
		case ev.kind == sttSpeechStarted && ts.eager:
			ts.eager = false
			kind = "turn.resume"
		case ev.kind == sttFramesDecoded:
			kind = "turn.update"
		}
		ts.heard.add([]sttEvent{ev})
		if kind == "" {
			continue
		}
		if err := ts.send(kind, nil); err != nil {
			return err
		}
	}
	return nil
}

// silence sends turn.eager_end and turn.end as the silence after the turn grows.
func (ts *sttTurnStream) silence() error {
	if !ts.open || ts.l.speaking || len(ts.heard.segments) == 0 {
		return nil
	}
	quiet := ts.l.total() - ts.heard.segments[len(ts.heard.segments)-1].End
	if !ts.eager && quiet >= ts.l.samples(sttEagerSilence) {
		ts.eager = true
		if err := ts.send("turn.eager_end", nil); err != nil {
			return err
		}
	}
	if quiet >= ts.l.samples(sttTurnEndSilence) {
		return ts.end()
	}
	return nil
}

// end sends turn.end with the turn's transcript and closes the turn.
func (ts *sttTurnStream) end() error {
	note := ts.l.note(&ts.heard)
	ts.open, ts.eager = false, false
	ts.turns++
	return ts.send("turn.end", note)
}

// closeStream ends an open turn with what has arrived, then the connection closes.
func (ts *sttTurnStream) closeStream() {
	if ts.hear(ts.l.flush()) != nil || !ts.open {
		return
	}
	_ = ts.end()
}

// send writes a turn event with the turn's transcript so far.
func (ts *sttTurnStream) send(kind string, note *sttNote) error {
	return ts.s.send(sttTurnEvent{Type: kind, RequestID: ts.s.c.id,
		Transcript: ts.heard.text(), Emulator: note})
}
