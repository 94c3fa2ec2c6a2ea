// audio.js is the page's sound layer: it decodes the audio Cartesia sends (WAV and raw PCM in
// all four encodings), plays streamed PCM gaplessly on the AudioContext clock, and captures
// the microphone as PCM at the rate a stream declares (through capture-worklet.js).
//
// It never talks to the network and never sees a token: the panels in app.js hand it bytes
// and take bytes from it.

/** AudioError is a page-side audio failure with a stable code, shown like a server error. */
export class AudioError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = "AudioError";
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// PCM and WAV decoding

/** Bytes per sample of each Cartesia PCM encoding. */
export const SAMPLE_BYTES = { pcm_s16le: 2, pcm_f32le: 4, pcm_mulaw: 1, pcm_alaw: 1 };

/** decodePCM turns little-endian PCM bytes into float samples in [-1, 1]. A trailing partial
 * sample is dropped (streams keep it for the next chunk with a PCMDecoder). */
export function decodePCM(bytes, encoding) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (encoding) {
    case "pcm_s16le": {
      const out = new Float32Array(bytes.length >> 1);
      for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true) / 32768;
      return out;
    }
    case "pcm_f32le": {
      const out = new Float32Array(bytes.length >> 2);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case "pcm_mulaw":
      return Float32Array.from(bytes, (b) => MULAW[b]);
    case "pcm_alaw":
      return Float32Array.from(bytes, (b) => ALAW[b]);
    default:
      throw new AudioError("unsupported_encoding", `Unknown PCM encoding "${encoding}".`);
  }
}

/** PCMDecoder decodes a byte stream chunk by chunk, carrying a sample split between two
 * chunks over to the next one (network chunks need not end on a sample boundary). */
export class PCMDecoder {
  #encoding;
  #size;
  #carry = new Uint8Array(0);

  constructor(encoding) {
    if (!SAMPLE_BYTES[encoding]) {
      throw new AudioError("unsupported_encoding", `Unknown PCM encoding "${encoding}".`);
    }
    this.#encoding = encoding;
    this.#size = SAMPLE_BYTES[encoding];
  }

  decode(bytes) {
    let data = bytes;
    if (this.#carry.length > 0) {
      data = new Uint8Array(this.#carry.length + bytes.length);
      data.set(this.#carry);
      data.set(bytes, this.#carry.length);
    }
    const whole = data.length - (data.length % this.#size);
    this.#carry = data.slice(whole);
    return decodePCM(data.subarray(0, whole), this.#encoding);
  }
}

// G.711 expansion tables (ITU-T G.711), 256 entries each, scaled to [-1, 1].
const MULAW = Float32Array.from({ length: 256 }, (_, i) => expandMulaw(i) / 32768);
const ALAW = Float32Array.from({ length: 256 }, (_, i) => expandAlaw(i) / 32768);

function expandMulaw(code) {
  const u = ~code & 0xff;
  const exponent = (u >> 4) & 0x07;
  const magnitude = (((u & 0x0f) << 3) + 0x84) << exponent;
  return u & 0x80 ? 0x84 - magnitude : magnitude - 0x84;
}

function expandAlaw(code) {
  const a = code ^ 0x55;
  const exponent = (a >> 4) & 0x07;
  let magnitude = (a & 0x0f) << 4;
  magnitude += exponent === 0 ? 8 : 0x108;
  if (exponent > 1) magnitude <<= exponent - 1;
  return a & 0x80 ? magnitude : -magnitude;
}

// WAV format tags (the fmt chunk's first field) and the sample size each allows.
const WAV_FORMATS = {
  1: { bits: 16, encoding: "pcm_s16le" },
  3: { bits: 32, encoding: "pcm_f32le" },
  6: { bits: 8, encoding: "pcm_alaw" },
  7: { bits: 8, encoding: "pcm_mulaw" },
};
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** parseWav reads a RIFF/WAVE file's fmt and data chunks. It tolerates the placeholder
 * sizes (0 or 0xFFFFFFFF) that streaming encoders write when the length is not known yet. */
export function parseWav(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new AudioError("bad_wav", "The audio is not a RIFF/WAVE file.");
  }

  let fmt = null;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;

    if (id === "fmt ") {
      if (size < 16 || body + 16 > bytes.length) {
        throw new AudioError("bad_wav", "The WAV fmt chunk is truncated.");
      }
      let format = view.getUint16(body, true);
      if (format === WAVE_FORMAT_EXTENSIBLE && size >= 40 && body + 26 <= bytes.length) {
        format = view.getUint16(body + 24, true); // the sub-format GUID starts with the tag
      }
      fmt = {
        format,
        channels: view.getUint16(body + 2, true),
        sampleRate: view.getUint32(body + 4, true),
        bits: view.getUint16(body + 14, true),
      };
    } else if (id === "data") {
      if (!fmt) throw new AudioError("bad_wav", "The WAV data chunk comes before its fmt chunk.");
      const known = WAV_FORMATS[fmt.format];
      if (!known || known.bits !== fmt.bits) {
        throw new AudioError(
          "unsupported_wav",
          `WAV format ${fmt.format} with ${fmt.bits}-bit samples is not supported.`,
        );
      }
      if (fmt.channels < 1 || fmt.sampleRate < 1) {
        throw new AudioError("bad_wav", "The WAV header has no channels or no sample rate.");
      }
      const available = bytes.length - body;
      const length = size === 0 || size > available ? available : size;
      return {
        encoding: known.encoding,
        channels: fmt.channels,
        sampleRate: fmt.sampleRate,
        data: bytes.subarray(body, body + length),
      };
    }

    offset = body + size + (size & 1); // chunks are padded to an even length
  }
  throw new AudioError("bad_wav", "The WAV file has no data chunk.");
}

/** toAudioBuffer copies interleaved float samples into a new AudioBuffer. */
export function toAudioBuffer(context, samples, sampleRate, channels) {
  const frames = Math.floor(samples.length / channels);
  if (frames === 0) throw new AudioError("empty_audio", "The server returned no audio samples.");

  const buffer = context.createBuffer(channels, frames, sampleRate);
  for (let ch = 0; ch < channels; ch++) {
    const plane = channels === 1 ? samples : new Float32Array(frames);
    if (channels > 1) for (let i = 0; i < frames; i++) plane[i] = samples[i * channels + ch];
    buffer.copyToChannel(plane, ch);
  }
  return buffer;
}

/** concatBytes joins byte chunks into one Uint8Array. */
export function concatBytes(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Gapless streaming playback

/** Resampler converts a mono stream from one rate to another by linear interpolation,
 * keeping its position and last sample between chunks so chunk boundaries leave no seam. */
export class Resampler {
  #step;
  #pos = 0;
  #prev = 0;

  constructor(from, to) {
    this.#step = from / to;
  }

  process(input) {
    if (this.#step === 1) return input;
    const frames = input.length;
    if (frames === 0) return input;
    const out = new Float32Array(Math.max(0, Math.ceil((frames - 1 - this.#pos) / this.#step)));
    let n = 0;
    while (this.#pos < frames - 1 && n < out.length) {
      const i = Math.floor(this.#pos);
      const frac = this.#pos - i;
      const a = i < 0 ? this.#prev : input[i];
      const b = input[i + 1];
      out[n++] = a + (b - a) * frac;
      this.#pos += this.#step;
    }
    this.#pos -= frames;
    this.#prev = input[frames - 1];
    return out.subarray(0, n);
  }
}

/** DEFAULT_LEAD_MS is the start-up buffer: the first chunk plays this long after it
 * arrives, so the next chunks have that much time to arrive before the speakers need them. */
export const DEFAULT_LEAD_MS = 150;

/**
 * StreamPlayer plays a stream of raw PCM chunks without gaps: every chunk becomes one
 * AudioBufferSourceNode scheduled to start exactly where the previous one ends, counted in
 * whole frames of the context's own rate (the stream is resampled here, continuously, so
 * the browser never resamples chunk by chunk and boundaries fall on sample frames: no
 * crackle). The first chunk starts leadMs after it arrives; a chunk that arrives after its
 * slot has passed is an underrun and starts a new lead.
 *
 * Events: "start" (first audio scheduled), "ended" (end() was called and the last buffer
 * finished), "underrun" (a chunk came after its slot had passed).
 */
export class StreamPlayer extends EventTarget {
  #context;
  #decoder;
  #resampler;
  #output;
  #leadFrames;
  #nextFrame = -1; // where the next chunk starts, in context frames; -1 before the first
  #restartFrame = 0; // after clear(): nothing may start before the fade-out has finished
  #sources = new Set();
  #analyser = null;
  #probe = null;
  #ending = false;
  #done = false;

  /** @param {AudioContext} context @param {{encoding: string, sampleRate: number,
   *  leadMs?: number}} format */
  constructor(context, { encoding, sampleRate, leadMs = DEFAULT_LEAD_MS }) {
    super();
    this.#context = context;
    this.#decoder = new PCMDecoder(encoding);
    this.#resampler = new Resampler(sampleRate, context.sampleRate);
    this.#leadFrames = Math.round((leadMs / 1000) * context.sampleRate);
    this.#output = context.createGain();
    this.#output.connect(context.destination);

    /** What the player did, for the page's facts and for tests. */
    this.stats = { chunks: 0, bytes: 0, frames: 0, underruns: 0, firstAt: null, schedule: [] };
  }

  /** Seconds of audio scheduled ahead of the context clock. */
  get bufferedSeconds() {
    if (this.#nextFrame < 0) return 0;
    return Math.max(0, this.#nextFrame / this.#context.sampleRate - this.#context.currentTime);
  }

  /** Whether buffers are scheduled or playing. */
  get playing() {
    return this.#sources.size > 0;
  }

  /** level is the RMS of what is playing right now (0..1), for a meter. */
  level() {
    if (!this.#analyser) {
      this.#analyser = this.#context.createAnalyser();
      this.#analyser.fftSize = 1024;
      this.#output.connect(this.#analyser);
      this.#probe = new Float32Array(this.#analyser.fftSize);
    }
    this.#analyser.getFloatTimeDomainData(this.#probe);
    let energy = 0;
    for (const s of this.#probe) energy += s * s;
    return Math.sqrt(energy / this.#probe.length);
  }

  /** push decodes one chunk of PCM bytes and schedules it after the previous one. */
  push(bytes) {
    if (this.#done) return;
    this.stats.chunks++;
    this.stats.bytes += bytes.length;
    const samples = this.#resampler.process(this.#decoder.decode(bytes));
    if (samples.length === 0) return;

    const rate = this.#context.sampleRate;
    const now = Math.ceil(this.#context.currentTime * rate);
    if (this.#nextFrame < 0) {
      this.#nextFrame = Math.max(now + this.#leadFrames, this.#restartFrame);
    } else if (this.#nextFrame < now) {
      this.stats.underruns++;
      this.dispatchEvent(new Event("underrun"));
      this.#nextFrame = now + this.#leadFrames;
    }

    const buffer = this.#context.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    const source = this.#context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.#output);
    source.addEventListener("ended", () => {
      this.#sources.delete(source);
      source.disconnect();
      this.#maybeEnded();
    });
    source.start(this.#nextFrame / rate);
    this.#sources.add(source);

    this.stats.schedule.push({ frame: this.#nextFrame, frames: samples.length });
    this.stats.frames += samples.length;
    if (this.stats.firstAt === null) {
      this.stats.firstAt = this.#nextFrame / rate;
      this.dispatchEvent(new Event("start"));
    }
    this.#nextFrame += samples.length;
  }

  /** end says no more chunks will come: "ended" fires when the last one has played. */
  end() {
    this.#ending = true;
    this.#maybeEnded();
  }

  /** clear stops everything now (barge-in, Stop), with a 15 ms fade to avoid a click. The
   * player stays usable: the next push starts a new lead. */
  clear() {
    const now = this.#context.currentTime;
    const gain = this.#output.gain;
    gain.cancelScheduledValues(now);
    gain.setValueAtTime(gain.value, now);
    gain.linearRampToValueAtTime(0, now + 0.015);
    for (const source of this.#sources) {
      try {
        source.stop(now + 0.02);
      } catch {
        // Never started or already stopped.
      }
    }
    gain.setValueAtTime(1, now + 0.025);
    this.#nextFrame = -1;
    this.#restartFrame = Math.ceil((now + 0.03) * this.#context.sampleRate);
    if (this.#sources.size === 0) this.#maybeEnded();
  }

  /** close clears and releases the player; no event fires after it. */
  close() {
    this.clear();
    this.#done = true;
    setTimeout(() => this.#output.disconnect(), 50);
  }

  #maybeEnded() {
    if (this.#ending && this.#sources.size === 0 && !this.#done) {
      this.#done = true;
      this.dispatchEvent(new Event("ended"));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Microphone capture

// The worklet module is added once per AudioContext.
const worklets = new WeakMap();

/**
 * openMicrophone asks for the microphone and streams it as PCM at the declared rate and
 * encoding: onChunk(bytes, level) receives about chunkMs of audio at a time. The context
 * keeps the device's own rate; capture-worklet.js converts (buglog B68, B70). Failures are
 * AudioErrors with codes insecure_context, microphone_unsupported, microphone_denied,
 * microphone_missing, microphone_busy, microphone_error and worklet_failed.
 *
 * processing turns the browser's echo cancellation, noise suppression and gain control on;
 * the emulator's tone code needs them off (they bend tones).
 *
 * Resolves with {deviceRate, label, stop()}; stop() flushes the last partial chunk and
 * releases the device.
 */
export async function openMicrophone(context, options) {
  const { sampleRate, encoding = "pcm_s16le", chunkMs = 100, processing = true, onChunk } =
    options;

  if (!globalThis.isSecureContext) {
    throw new AudioError("insecure_context",
      "The microphone needs a secure page: open this demo over HTTPS, or on localhost.");
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new AudioError("microphone_unsupported",
      "This browser offers no microphone API (navigator.mediaDevices is missing).");
  }
  if (!context.audioWorklet) {
    throw new AudioError("microphone_unsupported", "This browser has no AudioWorklet.");
  }

  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: { ideal: 1 },
        echoCancellation: processing,
        noiseSuppression: processing,
        autoGainControl: processing,
      },
    });
  } catch (err) {
    throw microphoneError(err);
  }

  try {
    if (!worklets.has(context)) worklets.set(context, context.audioWorklet.addModule(
      "/capture-worklet.js"));
    await worklets.get(context);
  } catch (err) {
    worklets.delete(context);
    stream.getTracks().forEach((t) => t.stop());
    throw new AudioError("worklet_failed",
      `The capture module /capture-worklet.js could not be loaded: ${err.message}`,
      { cause: err });
  }

  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { targetRate: sampleRate, encoding, chunkMs },
  });
  // The node writes silence; a muted path to the destination keeps it pulled by the graph in
  // every browser.
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(node);
  node.connect(mute).connect(context.destination);

  let stopped = null;
  let onStopped = () => {};
  node.port.onmessage = (event) => {
    const msg = event.data;
    if (msg.type === "chunk") onChunk?.(msg.bytes, msg.level);
    if (msg.type === "stopped") onStopped();
  };

  const [track] = stream.getAudioTracks();
  return {
    deviceRate: context.sampleRate,
    label: track?.label || "Microphone",
    stop() {
      if (stopped) return stopped;
      stopped = new Promise((resolve) => {
        onStopped = resolve;
        setTimeout(resolve, 500); // a suspended context never answers
        node.port.postMessage("stop");
      }).then(() => {
        stream.getTracks().forEach((t) => t.stop());
        source.disconnect();
        node.disconnect();
        mute.disconnect();
        node.port.onmessage = null;
      });
      return stopped;
    },
  };
}

function microphoneError(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return new AudioError("microphone_denied",
        "Microphone access was denied. Allow it for this site (the icon next to the " +
        "address) and try again.", { cause: err });
    case "NotFoundError":
    case "OverconstrainedError":
      return new AudioError("microphone_missing",
        "No microphone was found. Connect one and try again.", { cause: err });
    case "NotReadableError":
    case "AbortError":
      return new AudioError("microphone_busy",
        "The microphone could not be started; another application may be using it.",
        { cause: err });
    default:
      return new AudioError("microphone_error",
        `The microphone could not be opened: ${err?.message ?? err}`, { cause: err });
  }
}
