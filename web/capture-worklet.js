// capture-worklet.js is the AudioWorklet module behind the page's microphone: it runs on the
// audio rendering thread, mixes the microphone down to mono, converts the context's real
// sample rate (whatever the device runs at; never asserted, see buglog B68/B70) to the rate
// the stream declares, encodes 16-bit little-endian PCM or G.711 µ-law, and posts one chunk
// of about chunkMs milliseconds at a time to the page, with the chunk's RMS level for the
// meter and the pause detector.
//
// It owns no network, no token and no DOM: the page decides where the bytes go. It is loaded
// with audioWorklet.addModule("/capture-worklet.js") (CSP: scripts from 'self' only).

// Encodings the processor can produce; the declared encoding and the bytes are decided here,
// in one place (buglog B66: never send float bytes under a pcm_s16le declaration).
const BYTES_PER_SAMPLE = { pcm_s16le: 2, pcm_mulaw: 1 };

class PCMCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, encoding = "pcm_s16le", chunkMs = 100 } =
      options.processorOptions ?? {};
    if (!BYTES_PER_SAMPLE[encoding]) throw new Error(`capture: unsupported encoding ${encoding}`);

    this.encoding = encoding;
    this.targetRate = targetRate;
    // sampleRate is the AudioWorkletGlobalScope's: the context's real rate.
    this.step = sampleRate / targetRate; // source samples per output sample
    this.pos = 0; // position of the next output sample, in source samples after `prev`
    this.prev = 0; // the last source sample of the previous render quantum

    // A one-pole low-pass in front of the decimation keeps most of what lies above the
    // target's Nyquist frequency from folding back as hiss. Upsampling needs none.
    //
    // Limitation: a one-pole filter rolls off gently (6 dB per octave), so some energy
    // above the target's Nyquist frequency still aliases when downsampling. Speech has
    // little there; a windowed-sinc resampler would remove it at more cost per quantum.
    const cutoff = Math.min(0.45 * targetRate, 0.45 * sampleRate);
    this.alpha = this.step > 1 ? 1 - Math.exp((-2 * Math.PI * cutoff) / sampleRate) : 1;
    this.lp = 0;

    this.chunk = new Float32Array(Math.max(1, Math.round((targetRate * chunkMs) / 1000)));
    this.filled = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.flush();
      if (event.data === "stop") {
        this.flush();
        this.stopped = true;
        this.port.postMessage({ type: "stopped" });
      }
    };
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true; // no microphone frames this quantum
    const frames = input[0].length;

    // Mix down to mono and low-pass.
    const mono = new Float32Array(frames);
    for (const channel of input) {
      for (let i = 0; i < frames; i++) mono[i] += channel[i];
    }
    const gain = 1 / input.length;
    for (let i = 0; i < frames; i++) {
      this.lp += this.alpha * (mono[i] * gain - this.lp);
      mono[i] = this.lp;
    }

    // Linear interpolation between source samples; `pos` runs from -1 (between the
    // previous quantum's last sample and this one's first) up to frames - 1.
    while (this.pos < frames - 1) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i < 0 ? this.prev : mono[i];
      const b = mono[i + 1];
      this.push(a + (b - a) * frac);
      this.pos += this.step;
    }
    this.pos -= frames;
    this.prev = mono[frames - 1];
    return true;
  }

  push(sample) {
    this.chunk[this.filled++] = sample;
    if (this.filled === this.chunk.length) this.flush();
  }

  // flush posts what has been collected, encoded, and starts a new chunk.
  flush() {
    if (this.filled === 0) return;
    const samples = this.chunk.subarray(0, this.filled);
    let energy = 0;
    for (const s of samples) energy += s * s;
    const level = Math.sqrt(energy / samples.length);

    const bytes = encode(samples, this.encoding);
    this.port.postMessage({ type: "chunk", bytes, level, samples: samples.length },
      [bytes.buffer]);
    this.filled = 0;
  }
}

// encode turns float samples into the declared encoding, clipping to [-1, 1] first.
function encode(samples, encoding) {
  if (encoding === "pcm_mulaw") {
    const out = new Uint8Array(samples.length);
    for (let i = 0; i < samples.length; i++) out[i] = mulaw(toInt16(samples[i]));
    return out;
  }
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(2 * i, toInt16(samples[i]), true);
  return out;
}

function toInt16(s) {
  const clipped = s > 1 ? 1 : s < -1 ? -1 : s;
  return clipped < 0 ? Math.round(clipped * 32768) : Math.round(clipped * 32767);
}

// mulaw is G.711 µ-law compression of a 16-bit sample (bias 0x84, clip 32635).
function mulaw(pcm) {
  const sign = pcm < 0 ? 0x80 : 0;
  let magnitude = Math.min(Math.abs(pcm), 32635) + 0x84;
  let exponent = 7;
  for (let mask = 0x4000; (magnitude & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (magnitude >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

registerProcessor("pcm-capture", PCMCapture);
