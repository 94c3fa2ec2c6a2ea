//go:build !js

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// micTimeout bounds waits that depend on the fake microphone: its file loops, so a frame
// missed while the page was starting comes round again within one loop (2 to 3 s).
const micTimeout = 20 * time.Second

// openTab opens the page signed in, on one panel's tab.
func openTab(t *testing.T, s *server, tab string, extra ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	p := openPage(t, s, "/", extra...)
	p.signIn()
	p.b.do("open the "+tab+" tab", chromedp.Click(chromedp.ID("tab-"+tab)))
	p.b.waitFor("show the "+tab+" panel",
		fmt.Sprintf(`!document.getElementById(%q).hidden`, tab+"-panel"), stepTimeout)
	return p
}

// fakeMicrophone makes Chromium's fake capture device play a WAV file the test generates:
// half a second of silence, the tone code of text, then a second of silence (a pause long
// enough for Dictate to finalize), looped by Chromium.
func fakeMicrophone(t *testing.T, text string) []chromedp.ExecAllocatorOption {
	t.Helper()
	const rate = 48000
	samples := make([]float32, rate/2)
	samples = append(samples, tonecode.Encode(text, rate)...)
	samples = append(samples, make([]float32, rate)...)
	wav, err := audio.EncodeWAV(audio.S16LE, rate, samples)
	if err != nil {
		t.Fatalf("encode the microphone WAV: %v", err)
	}
	path := filepath.Join(t.TempDir(), "microphone.wav")
	if err := os.WriteFile(path, wav, 0o644); err != nil {
		t.Fatalf("write the microphone WAV: %v", err)
	}
	return []chromedp.ExecAllocatorOption{
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", path),
	}
}

// chunksOf reads an array of Uint8Array chunks on voxgateDemo as one byte string.
func chunksOf(p *page, expr string) []byte {
	p.t.Helper()
	return bytesFromJS(p.b, "read "+expr, fmt.Sprintf(`(() => {
		const chunks = %s;
		const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
		let offset = 0;
		for (const c of chunks) { out.set(c, offset); offset += c.length; }
		return out;
	})()`, expr))
}

// decodeFrames decodes every tone-code frame in raw PCM and returns their texts.
func decodeFrames(t *testing.T, raw []byte, encoding audio.Encoding, rate int) []string {
	t.Helper()
	samples, err := audio.Decode(encoding, raw)
	if err != nil {
		t.Fatalf("decode %s (%d bytes): %v", encoding, len(raw), err)
	}
	frames, err := tonecode.DecodeAll(samples, rate)
	if err != nil {
		t.Fatalf("tone-decode %d samples at %d Hz: %v", len(samples), rate, err)
	}
	texts := make([]string, len(frames))
	for i, f := range frames {
		texts[i] = f.Text
	}
	return texts
}

// pageRecord is the part every panel's voxgateDemo record has.
type pageRecord struct {
	Run      int  `json:"run"`
	Complete bool `json:"complete"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// waitRecord waits until voxgateDemo[name] of run is complete (or failed) and fails the
// test on an error.
func (p *page) waitRecord(name string, run int, done string, timeout time.Duration) {
	p.t.Helper()
	p.b.waitFor(name, fmt.Sprintf(`(() => {
		const r = voxgateDemo[%q];
		return r && r.run === %d && (r.error !== null || (%s));
	})()`, name, run, done), timeout)
	r := eval[pageRecord](p.b, "read "+name, fmt.Sprintf(`voxgateDemo[%q]`, name))
	if r.Error != nil {
		p.t.Fatalf("%s failed: %s: %s", name, r.Error.Code, r.Error.Message)
	}
}

func (p *page) finish(s *server, screenshot string) {
	p.t.Helper()
	p.t.Logf("screenshot: %s", p.b.screenshot(screenshot))
	if problems := p.b.consoleProblems(); len(problems) > 0 {
		p.t.Errorf("the page logged problems:\n  %s", strings.Join(problems, "\n  "))
	}
	cookies := p.b.cookieValues(s.URL)
	s.Stop()
	assertNoSecrets(p.t, s, cookies)
}

func TestStreamPlaysSSEChunksBackToBack(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openTab(t, s, "stream")

	const text = "Streaming speech, chunk by chunk, with no gaps."
	p.clear("stream-text")
	p.b.do("stream",
		chromedp.SendKeys(chromedp.ID("stream-text"), text),
		chromedp.SetValue(chromedp.ID("stream-format"), "raw:pcm_s16le:24000"),
		chromedp.Click(chromedp.ID("stream-start")),
	)
	p.waitRecord("stream", 1, "r.complete", stepTimeout)

	// The audio arrived in several chunks and decodes to the sentence.
	got := eval[struct {
		Chunks   int `json:"chunks"`
		Schedule []struct {
			Frame  int `json:"frame"`
			Frames int `json:"frames"`
		} `json:"schedule"`
		Words []struct {
			Word  string  `json:"word"`
			Start float64 `json:"start"`
		} `json:"words"`
	}](p.b, "read the stream", `({chunks: voxgateDemo.stream.chunks.length,
		schedule: voxgateDemo.stream.schedule, words: voxgateDemo.stream.words})`)
	if got.Chunks < 2 {
		t.Errorf("the stream arrived in %d chunk(s); want it streamed in several", got.Chunks)
	}
	raw := chunksOf(p, "voxgateDemo.stream.chunks")
	if texts := decodeFrames(t, raw, audio.S16LE, 24000); strings.Join(texts, "") != text {
		t.Errorf("the streamed audio decodes to %q, want %q", texts, text)
	}

	// Every chunk was scheduled exactly where the previous one ends: no gap, no overlap.
	if len(got.Schedule) == 0 {
		t.Fatal("nothing was scheduled for playback")
	}
	for i := 1; i < len(got.Schedule); i++ {
		prev, cur := got.Schedule[i-1], got.Schedule[i]
		if cur.Frame != prev.Frame+prev.Frames {
			t.Errorf("chunk %d starts at frame %d, want %d (right after chunk %d)",
				i, cur.Frame, prev.Frame+prev.Frames, i-1)
		}
	}

	// Word timestamps came with the audio, one per word of the text.
	words := make([]string, len(got.Words))
	for i, w := range got.Words {
		words[i] = w.Word
	}
	if strings.Join(words, " ") != text {
		t.Errorf("timestamped words %q, want the words of %q", words, text)
	}

	// Playback runs to its end on the audio clock.
	p.b.waitFor("play to the end", `document.getElementById("stream-panel").dataset.state === "done"`,
		stepTimeout)
	p.finish(s, "stream")
}

func TestTypeAsYouGoSpeaksTheTypedText(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	p := openTab(t, s, "live")

	const text = "Typed live, word by word."
	p.b.do("type", chromedp.SendKeys(chromedp.ID("live-text"), text))
	p.b.waitFor("a pause flushes the rest",
		fmt.Sprintf(`voxgateDemo.live && voxgateDemo.live.pushes.map((p) => p.text).join("") === %q`,
			text), stepTimeout)
	p.b.do("end the session", chromedp.SendKeys(chromedp.ID("live-text"), kb.Enter))
	p.waitRecord("live", 1, "r.complete", stepTimeout)

	pushes := eval[[]struct {
		Text  string `json:"text"`
		Flush bool   `json:"flush"`
	}](p.b, "read pushes", "voxgateDemo.live.pushes")
	if len(pushes) < 4 {
		t.Errorf("the text went out in %d pushes; want one per word or so: %+v", len(pushes), pushes)
	}
	flushes := 0
	for _, push := range pushes {
		if push.Flush {
			flushes++
		}
	}
	if flushes == 0 {
		t.Errorf("no push flushed, though the text has a sentence end and a pause")
	}

	raw := chunksOf(p, "voxgateDemo.live.chunks")
	if texts := decodeFrames(t, raw, audio.F32LE, 44100); strings.Join(texts, "") != text {
		t.Errorf("the context's audio decodes to %q, want %q", texts, text)
	}
	p.finish(s, "live")
}

// dictate runs the Dictate panel (which must be showing) once: start the microphone, wait
// for a final transcript, stop, and return the non-empty finals.
func (p *page) dictate() []string {
	p.t.Helper()
	p.b.do("start the microphone", chromedp.Click(chromedp.ID("dictate-start")))
	p.b.waitFor("a final transcript",
		`voxgateDemo.dictate && (voxgateDemo.dictate.error !== null ||
			voxgateDemo.dictate.finals.some((f) => f !== ""))`, micTimeout)
	p.b.do("stop", chromedp.Click(chromedp.ID("dictate-stop")))
	p.waitRecord("dictate", 1, "r.complete", stepTimeout)
	return eval[[]string](p.b, "read finals", "voxgateDemo.dictate.finals.filter((f) => f)")
}

// speechFile writes the tone code of text, after half a second of silence, as a 16 kHz WAV
// file and returns its path.
func speechFile(t *testing.T, text string) string {
	t.Helper()
	samples := append(make([]float32, 8000), tonecode.Encode(text, 16000)...)
	wav, err := audio.EncodeWAV(audio.S16LE, 16000, samples)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "speech.wav")
	if err := os.WriteFile(path, wav, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMicrophoneTranscriptMatchesTheSpokenText(t *testing.T) {
	t.Parallel()
	const text = "Hello from the microphone."
	s := startServer(t)
	p := openTab(t, s, "dictate", fakeMicrophone(t, text)...)

	finals := p.dictate()
	if len(finals) == 0 || finals[0] != text {
		t.Errorf("final transcripts %q, want the first to be %q", finals, text)
	}
	shown := eval[string](p.b, "read the transcript",
		`document.querySelector('#dictate-transcript .segment[data-final]').textContent`)
	if shown != text {
		t.Errorf("the page shows %q, want %q", shown, text)
	}
	device := eval[string](p.b, "device", `document.getElementById("dictate-device").textContent`)
	if !strings.Contains(device, "16 kHz") {
		t.Errorf("the device line reads %q; want the conversion to 16 kHz", device)
	}
	p.finish(s, "dictate")
}

func TestTurnsShowTheSpokenText(t *testing.T) {
	t.Parallel()
	const text = "Is this turn over?"
	s := startServer(t)
	p := openTab(t, s, "turns", fakeMicrophone(t, text)...)

	p.b.do("start the microphone", chromedp.Click(chromedp.ID("turns-start")))
	p.b.waitFor("an ended turn", `voxgateDemo.turns && (voxgateDemo.turns.error !== null ||
		voxgateDemo.turns.turns.some((t) => t.state === "ended"))`, micTimeout)
	p.b.do("stop", chromedp.Click(chromedp.ID("turns-stop")))
	p.waitRecord("turns", 1, "r.complete", stepTimeout)

	got := eval[struct {
		Events []string `json:"events"`
		Shown  string   `json:"shown"`
		Turn   string   `json:"turn"`
	}](p.b, "read turns", `({
		events: voxgateDemo.turns.events,
		turn: voxgateDemo.turns.turns.find((t) => t.state === "ended").transcript,
		shown: document.querySelector('#turn-list .turn[data-state="ended"] .turn-text').textContent,
	})`)
	if got.Turn != text || got.Shown != text {
		t.Errorf("the ended turn holds %q and shows %q, want %q", got.Turn, got.Shown, text)
	}
	if len(got.Events) == 0 || got.Events[0] != "connected" {
		t.Errorf("turn events %q, want connected first", got.Events)
	}
	p.finish(s, "turns")
}

func TestFileUploadTranscribesBothRoutes(t *testing.T) {
	t.Parallel()
	const text = "A file, transcribed in one request."
	s := startServer(t)
	p := openTab(t, s, "transcribe")

	path := speechFile(t, text)
	p.b.do("choose the file", chromedp.SetUploadFiles(chromedp.ID("transcribe-file"), []string{path}))

	for run, endpoint := range []string{"stt", "openai"} {
		p.b.do("transcribe via "+endpoint,
			chromedp.SetValue(chromedp.ID("transcribe-endpoint"), endpoint),
			chromedp.Click(chromedp.ID("transcribe-submit")),
		)
		p.waitRecord("transcription", run+1, "r.result !== null", stepTimeout)
		got := eval[struct {
			Text  string `json:"text"`
			Shown string `json:"shown"`
			Words int    `json:"words"`
		}](p.b, "read the result", `({
			text: voxgateDemo.transcription.result.text,
			words: (voxgateDemo.transcription.result.words || []).length,
			shown: document.getElementById("transcribe-text").textContent,
		})`)
		if got.Text != text || got.Shown != text {
			t.Errorf("%s: transcript %q, shown %q, want %q", endpoint, got.Text, got.Shown, text)
		}
		if want := len(strings.Fields(text)); got.Words != want {
			t.Errorf("%s: %d word timestamps, want %d", endpoint, got.Words, want)
		}
	}
	p.finish(s, "transcribe")
}

func TestAgentAnswersWhatWasSaid(t *testing.T) {
	t.Parallel()
	const said = "Book a table for two."
	s := startServer(t)
	p := openTab(t, s, "agent", fakeMicrophone(t, said)...)

	p.b.do("call", chromedp.Click(chromedp.ID("agent-call")))
	p.b.waitFor("the call is live", `voxgateDemo.agent && (voxgateDemo.agent.error !== null ||
		document.getElementById("agent-panel").dataset.state === "live")`, stepTimeout)

	// The agent's reply comes back as audio in the call's format, pcm_16000.
	const reply = "You said: " + said
	deadline := time.Now().Add(micTimeout)
	for {
		raw := chunksOf(p, "voxgateDemo.agent.media")
		samples, err := audio.Decode(audio.S16LE, raw)
		if err != nil {
			t.Fatalf("decode the agent's audio: %v", err)
		}
		frames, _ := tonecode.DecodeAll(samples, 16000)
		if len(frames) > 0 {
			if frames[0].Text != reply {
				t.Errorf("the agent's first reply decodes to %q, want %q", frames[0].Text, reply)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reply from the agent within %s (%d bytes of audio)", micTimeout, len(raw))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A keypad press goes out as dtmf and the emulator echoes it back.
	p.b.do("press 5", chromedp.Click(chromedp.CSS(`#agent-keypad button[data-digit="5"]`)))
	p.b.waitFor("the dtmf echo",
		`voxgateDemo.agent.events.some((e) => e.type === "dtmf" && e.digit === "5")`, stepTimeout)

	p.b.do("hang up", chromedp.Click(chromedp.ID("agent-hangup")))
	p.b.waitFor("the call closes", `voxgateDemo.agent.closed !== null`, stepTimeout)
	p.finish(s, "agent")
}

func TestMicrophoneCaptureConvertsToTheDeclaredFormat(t *testing.T) {
	t.Parallel()
	const text = "Captured at the device rate."
	s := startServer(t)
	p := openPage(t, s, "/", fakeMicrophone(t, text)...)

	// Two captures at once from the same device, through the page's own audio module: the
	// STT format and the telephone format of the agent. 3.5 s hold one whole frame wherever
	// in the file's loop (about 2.4 s) the capture starts.
	type capture struct {
		DeviceRate int    `json:"deviceRate"`
		Sizes      []int  `json:"sizes"`
		Audio      string `json:"audio"`
	}
	got := eval[[]capture](p.b, "capture", `(async () => {
		const { openMicrophone, concatBytes } = await import("/audio.js");
		const context = new AudioContext();
		await context.resume();
		const capture = async (sampleRate, encoding) => {
			const chunks = [];
			const mic = await openMicrophone(context, { sampleRate, encoding, processing: false,
				onChunk: (bytes) => chunks.push(bytes) });
			await new Promise((resolve) => setTimeout(resolve, 3500));
			await mic.stop();
			const all = concatBytes(chunks);
			let text = "";
			for (let i = 0; i < all.length; i += 0x8000) {
				text += String.fromCharCode.apply(null, all.subarray(i, i + 0x8000));
			}
			return { deviceRate: mic.deviceRate, sizes: chunks.map((c) => c.length),
				audio: btoa(text) };
		};
		return Promise.all([capture(16000, "pcm_s16le"), capture(8000, "pcm_mulaw")]);
	})()`)

	cases := []struct {
		encoding  audio.Encoding
		rate      int
		chunkSize int // bytes in 100 ms
	}{
		{audio.S16LE, 16000, 3200},
		{audio.MuLaw, 8000, 800},
	}
	for i, c := range cases {
		g := got[i]
		if g.DeviceRate == c.rate {
			t.Logf("%s: the device runs at %d Hz itself; no conversion exercised", c.encoding, c.rate)
		}
		for j, size := range g.Sizes[:len(g.Sizes)-1] {
			if size != c.chunkSize {
				t.Errorf("%s chunk %d is %d bytes, want %d (100 ms)", c.encoding, j, size, c.chunkSize)
				break
			}
		}
		texts := decodeFrames(t, decodeBase64(t, g.Audio), c.encoding, c.rate)
		if texts[0] != text {
			t.Errorf("%s at %d Hz: the capture decodes to %q, want %q first",
				c.encoding, c.rate, texts, text)
		}
	}
	s.Stop()
}

func TestMicrophoneRefusalIsExplained(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	// No fake device and prompts denied: getUserMedia fails the way it does for a visitor
	// who says no (or has no microphone at all).
	p := openTab(t, s, "dictate", chromedp.Flag("deny-permission-prompts", true))

	p.b.do("start the microphone", chromedp.Click(chromedp.ID("dictate-start")))
	p.b.waitFor("the error", `!document.getElementById("dictate-error").hidden`, stepTimeout)
	got := eval[struct {
		Code  string `json:"code"`
		Text  string `json:"text"`
		State string `json:"state"`
		Start bool   `json:"start"`
	}](p.b, "read the error", `({
		code: document.getElementById("dictate-error").dataset.code,
		text: document.getElementById("dictate-error").textContent,
		state: document.getElementById("dictate-panel").dataset.state,
		start: !document.getElementById("dictate-start").disabled,
	})`)
	if got.Code != "microphone_denied" && got.Code != "microphone_missing" {
		t.Errorf("refused microphone shows code %q (%q); want microphone_denied or "+
			"microphone_missing", got.Code, got.Text)
	}
	if !strings.Contains(got.Text, "microphone") && !strings.Contains(got.Text, "Microphone") {
		t.Errorf("the message %q does not say what is wrong", got.Text)
	}
	if got.State != "error" || !got.Start {
		t.Errorf("after the refusal the panel is %q (start enabled: %v); want error and a "+
			"working start button", got.State, got.Start)
	}
	p.finish(s, "dictate-refused")
}
