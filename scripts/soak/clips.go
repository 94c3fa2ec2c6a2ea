package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// clipRate is the sample rate of every clip: what the STT calls declare and the agent
// call's pcm_16000 input format.
const clipRate = 16000

// phrases are what the calls say. Short, so that a call is quick and many fit in a run;
// different lengths, so that a mixed-up answer shows as a wrong length or transcript.
var phrases = []string{
	"Hello from the soak test.",
	"Tokens expire every few seconds.",
	"No call may fail on an expired token.",
	"One refresh per lifetime, per grant.",
	"Two tabs share one session.",
	"Speak, listen, transcribe, call.",
}

// clip is one phrase with everything the page needs to say it and check the answers.
type clip struct {
	Text string `json:"text"`
	// Audio is the phrase's tone code as 16 kHz 16-bit mono PCM, with silence around it
	// (the emulator's transcriber finds speech by its energy), base64 in JSON.
	Audio []byte `json:"audio"`
	// WAV is the same audio in a WAV file, for the batch transcriptions.
	WAV []byte `json:"wav"`
	// SpeechBytes is the length of the raw 16 kHz s16le audio TTS returns for the phrase.
	SpeechBytes int `json:"speechBytes"`
	// ReplyBytes is the length of the emulated agent's spoken answer, "You said: <text>".
	ReplyBytes int `json:"replyBytes"`
}

// makeClips encodes every phrase.
func makeClips() ([]clip, error) {
	lead := make([]float32, clipRate/5)  // 200 ms
	trail := make([]float32, clipRate/2) // 500 ms: the transcriber's segment ends in silence
	clips := make([]clip, 0, len(phrases))
	for _, text := range phrases {
		samples := append(append(append([]float32(nil), lead...), tonecode.Encode(text, clipRate)...),
			trail...)
		raw, err := audio.Encode(audio.S16LE, samples)
		if err != nil {
			return nil, fmt.Errorf("soak: encode %q: %w", text, err)
		}
		wav, err := audio.EncodeWAV(audio.S16LE, clipRate, samples)
		if err != nil {
			return nil, fmt.Errorf("soak: encode %q as WAV: %w", text, err)
		}
		clips = append(clips, clip{
			Text:        text,
			Audio:       raw,
			WAV:         wav,
			SpeechBytes: 2 * tonecode.SampleCount(text, clipRate),
			ReplyBytes:  2 * tonecode.SampleCount("You said: "+text, clipRate),
		})
	}
	return clips, nil
}

// machine describes where the soak ran, for the results: no host name, nothing personal.
type machine struct {
	CPU      string
	Cores    int
	MemoryGB float64
	OS       string
	Go       string
	Chromium string
}

func describeMachine(chromium string) machine {
	m := machine{
		CPU:      "unknown",
		Cores:    runtime.NumCPU(),
		OS:       runtime.GOOS + "/" + runtime.GOARCH,
		Go:       runtime.Version(),
		Chromium: "unknown",
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPU = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		var kb float64
		if _, err := fmt.Sscanf(v, "%f kB", &kb); err == nil {
			m.MemoryGB = kb / (1024 * 1024)
		}
	}
	if out, err := exec.Command(chromium, "--version").Output(); err == nil {
		m.Chromium = strings.TrimSpace(string(out))
	}
	return m
}

// describeTree names the commit the soak runs from, noting uncommitted changes: the
// results depend on the client and server code of that tree. It only reads git state.
func describeTree() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	tree := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(status))) > 0 {
		tree += " with uncommitted changes"
	}
	return tree
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
