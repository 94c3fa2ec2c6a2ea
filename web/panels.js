// panels.js drives the streaming panels of the demo page, one section each:
//
//   Stream        client.tts.sse       gapless playback with a start-up buffer, word highlights
//   Type & hear   client.tts.websocket one context per typing session, pushed word by word
//   Dictate       client.stt.websocket the microphone, live interim and final transcripts
//   Turns         client.stt.turns     the server's turn detection, one card per turn
//   File          client.stt.transcribe / client.stt.openai, a file in, a transcript out
//   Agent         client.agent.call    microphone in, agent audio out, barge-in, keypad
//
// Like app.js it reaches the server only through the voxgate client: no URL, token or cookie
// is built or seen here. Audio goes through audio.js.
//
// For the browser tests each panel keeps data-run (one more per start) and data-state on its
// section, and publishes what it sent and received on globalThis.voxgateDemo: stream, live,
// dictate, turns, transcription and agent (see each section).
import { StreamPlayer, openMicrophone, DEFAULT_LEAD_MS } from "/audio.js";

const $ = (id) => document.getElementById(id);

// STT_FORMAT is what the page declares to the STT sockets; the microphone is converted to it.
const STT_FORMAT = { encoding: "pcm_s16le", sampleRate: 16000 };

// PAUSE_LEVEL is the RMS level under which a 100 ms microphone chunk counts as silence, and
// PAUSE_MS how much silence after speech makes Dictate send finalize.
const PAUSE_LEVEL = 0.015;
const PAUSE_MS = 600;

// AGENT_FORMATS maps the agent's input_format to the bytes the microphone must produce and
// the agent's audio is decoded from (media_output comes back in the input format).
const AGENT_FORMATS = {
  pcm_16000: { encoding: "pcm_s16le", sampleRate: 16000 },
  pcm_24000: { encoding: "pcm_s16le", sampleRate: 24000 },
  pcm_44100: { encoding: "pcm_s16le", sampleRate: 44100 },
  mulaw_8000: { encoding: "pcm_mulaw", sampleRate: 8000 },
};

const AGENT_ID = /^[A-Za-z0-9_-]{1,128}$/;

// REPLY_GAP_MS is how long without agent audio ends one reply in the call's event log: the
// agent streams each reply as many short media frames, and the log shows one line per reply.
const REPLY_GAP_MS = 700;

// SAMPLE_SIZE is the bytes per sample of the agent's audio encodings.
const SAMPLE_SIZE = { pcm_s16le: 2, pcm_mulaw: 1 };

// MAX_UPLOAD is the server's cap on a batch STT upload (the proxy answers 413 above it).
const MAX_UPLOAD = 25 * 1024 * 1024;

// deps are app.js's shared pieces: {demo, audioContext, showAlert, showInvalid, clearInvalid}.
let deps = null;
let emulator = false;

/** PageError is a page-side failure (bad input) shown like a server error. */
class PageError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "PageError";
    this.code = code;
  }
}

/** setUpstream tells the panels whether the upstream is the emulator: its tone code needs
 * the browser's voice processing (echo cancellation, noise suppression, gain) off.
 *
 * Limitation: without echo cancellation (emulator only), an agent call on loudspeakers
 * hears the agent's own tones and answers them; use headphones against the emulator. */
export function setUpstream(upstream) {
  emulator = upstream === "emulator";
  $("transcribe-file-name").textContent = fileHint();
  if (emulator) $("transcribe-file").accept = "audio/wav,audio/x-wav,.wav";
}

/** wirePanels attaches every panel's handlers once the client is loaded. */
export function wirePanels(shared) {
  deps = shared;
  fillSelects();
  wireStream();
  wireLive();
  wireDictate();
  wireTurns();
  wireTranscribe();
  wireAgent();
}

/** stopPanels ends everything that is running (sign-out). */
export function stopPanels() {
  stopStream("stopped");
  finishLive({ abandon: true });
  stopDictate();
  stopTurns();
  hangUp();
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

// fillSelects copies the Speak panel's voices and languages into the other panels.
function fillSelects() {
  for (const select of document.querySelectorAll(".voice-select")) {
    for (const option of $("voice").options) {
      if (option.value !== "custom") select.append(option.cloneNode(true));
    }
  }
  for (const select of document.querySelectorAll(".language-select")) {
    for (const option of $("language").options) select.append(option.cloneNode(true));
  }
}

// setState sets a panel's data-state and its status pill.
function setState(name, state, label) {
  $(`${name}-panel`).dataset.state = state;
  const status = $(`${name}-status`);
  status.textContent = label;
  status.dataset.state = state;
}

// nextRun counts one more start of a panel and returns the new run number.
function nextRun(name) {
  const panel = $(`${name}-panel`);
  const run = Number(panel.dataset.run) + 1;
  panel.dataset.run = String(run);
  return run;
}

function fail(name, err, record) {
  if (record) record.error = { code: err?.code ?? "error", message: err?.message ?? String(err) };
  deps.demo.lastError = err;
  deps.showAlert(`${name}-error`, err);
  setState(name, "error", "Failed");
}

function clearError(name) {
  $(`${name}-error`).hidden = true;
}

// invalid reports a page-side input error next to its field instead of in the alert box.
function invalid(name, fieldId, err, record) {
  if (record) record.error = { code: err.code, message: err.message };
  deps.demo.lastError = err;
  deps.showInvalid(fieldId, err.message);
  setState(name, "error", "Check the form");
}

// attempt calls fn and always returns a promise: a client method that throws at once (a bad
// argument) rejects like one that fails later.
function attempt(fn) {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

// quietly drops the rejection of a fire-and-forget send: a frame sent while the socket
// closes fails, and the reader of the same socket already reports why it closed.
function quietly(result) {
  result?.catch?.(() => {});
}

function isAbort(err) {
  return err?.code === "aborted" || err?.name === "AbortError";
}

function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function seconds(n) {
  return `${n.toFixed(n < 10 ? 2 : 1)} s`;
}

// showLevel draws an RMS level (0..1) on a meter, on a log scale from -60 dBFS.
function showLevel(fill, level) {
  const db = 20 * Math.log10(Math.max(level, 1e-6));
  fill.style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100)).toFixed(0)}%`;
}

// voiceOf reads a voice select as Cartesia's voice object.
function voiceOf(id) {
  return { mode: "id", id: $(id).value };
}

/**
 * startMicrophone opens the microphone at a stream's format and hands each chunk to send
 * once the stream is ready; chunks captured before that are queued (at most maxQueueMs),
 * so the first words are not lost while the socket opens. Returns {mic, ready(sink)}.
 */
async function startMicrophone(context, format, { levelFill, onLevel } = {}) {
  const queue = [];
  let sink = null;
  const maxQueue = 50; // 5 s of 100 ms chunks
  const mic = await openMicrophone(context, {
    sampleRate: format.sampleRate,
    encoding: format.encoding,
    chunkMs: 100,
    processing: !emulator,
    onChunk(bytes, level) {
      if (levelFill) showLevel(levelFill, level);
      onLevel?.(level);
      if (sink) {
        sink(bytes);
        return;
      }
      queue.push(bytes);
      if (queue.length > maxQueue) queue.shift();
    },
  });
  return {
    mic,
    ready(send) {
      for (const bytes of queue.splice(0)) send(bytes);
      sink = send;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Stream: POST /tts/sse, played while it arrives.
//
// voxgateDemo.stream = {run, format, chunks: Uint8Array[], words: [{word, start, end}],
//   schedule: [{frame, frames}] (context frames), contextRate, underruns, complete, error}

let streaming = null; // {record, abort, player, timer}

function wireStream() {
  $("stream-lead").textContent = `${DEFAULT_LEAD_MS} ms`;
  $("stream-form").addEventListener("submit", onStream);
  $("stream-stop").addEventListener("click", () => stopStream("stopped"));
}

function onStream(event) {
  event.preventDefault();
  const context = deps.audioContext(); // inside the click: see app.js onSpeak
  clearError("stream");
  deps.clearInvalid("stream-text");
  stopStream("replaced");

  const [container, encoding, rate] = $("stream-format").value.split(":");
  const format = { container, encoding, sample_rate: Number(rate) };
  const transcript = $("stream-text").value;
  const run = nextRun("stream");
  const record = {
    run, format, chunks: [], words: [], schedule: [], contextRate: context.sampleRate,
    underruns: 0, complete: false, error: null,
  };
  deps.demo.stream = record;
  if (!transcript.trim()) {
    invalid("stream", "stream-text", new PageError("missing_text", "Type some text to stream."),
      record);
    return;
  }

  const request = {
    model_id: $("model").value,
    transcript,
    voice: voiceOf("stream-voice"),
    output_format: format,
    language: $("stream-language").value,
    add_timestamps: $("stream-timestamps").checked,
  };
  runStream(context, request, record);
}

async function runStream(context, request, record) {
  const player = new StreamPlayer(context, {
    encoding: record.format.encoding, sampleRate: record.format.sample_rate,
  });
  record.schedule = player.stats.schedule;
  const abort = new AbortController();
  const current = { record, abort, player, timer: 0 };
  streaming = current;
  const started = performance.now();

  resetStreamView(request.transcript);
  setState("stream", "streaming", "Waiting for audio…");
  $("stream-start").disabled = true;
  $("stream-stop").disabled = false;

  player.addEventListener("start", () => {
    const audibleIn = (player.stats.firstAt - context.currentTime) * 1000;
    $("stream-first").textContent = `${Math.round(performance.now() - started + audibleIn)} ms`;
    if (streaming === current) setState("stream", "streaming", "Playing…");
  });
  player.addEventListener("underrun", () => {
    record.underruns = player.stats.underruns;
  });
  player.addEventListener("ended", () => {
    if (streaming !== current) return;
    setState("stream", "done", "Played");
    endStream(current);
  });
  current.timer = setInterval(() => renderStream(current, context), 80);

  try {
    for await (const event of deps.demo.client.tts.sse(request, { signal: abort.signal })) {
      if (streaming !== current) break;
      if (event.type === "chunk") {
        record.chunks.push(event.audio);
        player.push(event.audio);
      } else if (event.type === "timestamps") {
        addWords(record, event);
      } else if (event.type === "done") {
        break;
      }
    }
    if (streaming !== current) return;
    record.complete = true;
    player.end();
    if (record.chunks.length === 0) {
      setState("stream", "done", "No audio");
      endStream(current);
    }
  } catch (err) {
    if (streaming !== current || isAbort(err)) return;
    player.close();
    endStream(current);
    fail("stream", err, record);
  }
}

// stopStream aborts the request and silences what is scheduled.
function stopStream(reason) {
  const current = streaming;
  if (!current) return;
  current.abort.abort();
  current.player.close();
  endStream(current);
  if (reason === "stopped") setState("stream", "stopped", "Stopped");
}

function endStream(current) {
  clearInterval(current.timer);
  for (const word of $("stream-words").children) word.classList.remove("current");
  if (streaming === current) streaming = null;
  $("stream-start").disabled = false;
  $("stream-stop").disabled = true;
  $("stream-buffer").style.width = "0%";
  $("stream-buffer-ms").textContent = "0 ms";
}

function resetStreamView(transcript) {
  $("stream-first").textContent = "—";
  $("stream-chunks").textContent = "0";
  $("stream-received").textContent = "0 s";
  $("stream-underruns").textContent = "0";
  $("stream-words").replaceChildren(el("span", "word", transcript));
}

function addWords(record, event) {
  const words = $("stream-words");
  if (record.words.length === 0) words.replaceChildren();
  event.words.forEach((word, i) => {
    const entry = { word, start: event.start[i], end: event.end[i] };
    record.words.push(entry);
    const span = el("span", "word", word);
    span.dataset.start = String(entry.start);
    span.dataset.end = String(entry.end);
    words.append(span, " ");
  });
}

function renderStream({ record, player }, context) {
  const buffered = player.bufferedSeconds * 1000;
  $("stream-buffer").style.width = `${Math.min(100, (buffered / 1500) * 100).toFixed(1)}%`;
  $("stream-buffer-ms").textContent = `${Math.round(buffered)} ms`;
  $("stream-chunks").textContent = String(record.chunks.length);
  $("stream-received").textContent = seconds(player.stats.frames / context.sampleRate);
  $("stream-underruns").textContent = String(player.stats.underruns);

  // Timestamps count from the start of the audio; the first chunk started at firstAt.
  // Limitation: after an underrun the audio runs later than its timestamps, so the
  // highlight runs ahead by the length of the gap.
  if (player.stats.firstAt === null || record.words.length === 0) return;
  const position = context.currentTime - player.stats.firstAt;
  for (const span of $("stream-words").children) {
    const start = Number(span.dataset.start);
    const end = Number(span.dataset.end);
    span.classList.toggle("spoken", position >= end);
    span.classList.toggle("current", position >= start && position < end);
  }
}

// ---------------------------------------------------------------------------------------------
// Type & hear: WSS /tts/websocket, one context per typing session.
//
// A session starts with the first character typed. Each completed word (up to the last
// whitespace) is pushed at once, with flush when it ends a sentence; a pause flushes what is
// left, the unfinished word included; Enter or "Finish session" ends the context.
//
// Limitation: a word cut by a pause is spoken in two pieces ("hel", then "lo"), and text
// edited after it was pushed is not spoken again: Cartesia contexts only append.
//
// voxgateDemo.live = {run, contextId, format, pushes: [{text, flush}], chunks: Uint8Array[],
//   flushes, complete, error}

const LIVE_FORMAT = { container: "raw", encoding: "pcm_f32le", sample_rate: 44100 };

let liveSocket = null; // Promise<TTSSocket>, shared by the sessions until it closes
let live = null; // the typing session

function wireLive() {
  const text = $("live-text");
  text.addEventListener("input", onLiveInput);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      finishLive();
    }
  });
  $("live-finish").addEventListener("click", () => finishLive());
  $("live-clear").addEventListener("click", () => {
    finishLive({ abandon: true });
    text.value = "";
    $("live-sent").textContent = "";
    $("live-pending").textContent = "";
    setState("live", "idle", "Start typing");
    text.focus();
  });
}

function onLiveInput() {
  const value = $("live-text").value;
  if (!live) {
    if (!value.trim()) return;
    startLive(); // typing is a user gesture: the AudioContext may start here
  }
  const session = live;
  clearTimeout(session.pauseTimer);

  // Text already spoken cannot be unsaid: edits before the spoken part wait for a new
  // session.
  if (!value.startsWith(session.sent)) {
    session.edited = true;
    renderLive(session);
    return;
  }
  const pending = value.slice(session.sent.length);
  const cut = lastBoundary(pending);
  if (cut > 0) {
    const words = pending.slice(0, cut);
    pushLive(session, words, /[.!?;:]\s*$/.test(words));
  }
  session.pauseTimer = setTimeout(() => onLivePause(session), Number($("live-pause").value));
  renderLive(session);
}

// lastBoundary returns the index just after the last whitespace in text, or 0.
function lastBoundary(text) {
  const match = /\s(?=\S*$)/.exec(text);
  return match ? match.index + 1 : 0;
}

function onLivePause(session) {
  if (live !== session) return;
  const value = $("live-text").value;
  const pending = value.startsWith(session.sent) ? value.slice(session.sent.length) : "";
  if (pending) pushLive(session, pending, true);
  else if (session.unflushed) pushLive(session, "", true);
  renderLive(session);
}

function startLive() {
  const context = deps.audioContext();
  clearError("live");
  const run = nextRun("live");
  const record = {
    run, contextId: null, format: LIVE_FORMAT, pushes: [], chunks: [], flushes: 0,
    complete: false, error: null,
  };
  deps.demo.live = record;

  const player = new StreamPlayer(context, {
    encoding: LIVE_FORMAT.encoding, sampleRate: LIVE_FORMAT.sample_rate,
  });
  const session = {
    record, player, sent: "", unflushed: false, edited: false, pauseTimer: 0, ended: false,
    chain: null, context: null, frames: 0,
  };
  live = session;
  setState("live", "open", "Connecting…");
  $("live-finish").disabled = false;
  $("live-context").textContent = "…";

  // Pushes wait for the context in order: the chain holds them until it is open.
  session.chain = openLiveContext(session).then((ctx) => {
    session.context = ctx;
    record.contextId = ctx.id ?? ctx.contextId ?? null;
    $("live-context").textContent = record.contextId ? shortId(record.contextId) : "open";
    $("live-context").title = record.contextId ?? "";
    if (live === session && !session.ended) setState("live", "open", "Listening to your typing");
    readLive(session, ctx, context);
    return ctx;
  });
  session.chain.catch((err) => liveFailed(session, err));
}

async function openLiveContext(session) {
  if (!liveSocket) {
    liveSocket = attempt(() => deps.demo.client.tts.websocket());
    const opened = liveSocket;
    opened.then((socket) => socket.closed.finally(() => {
      if (liveSocket === opened) liveSocket = null;
    })).catch(() => {
      if (liveSocket === opened) liveSocket = null;
    });
  }
  const socket = await liveSocket;
  return socket.context({
    model_id: $("model").value,
    voice: voiceOf("live-voice"),
    output_format: LIVE_FORMAT,
    language: $("live-language").value,
  });
}

function pushLive(session, text, flush) {
  session.sent += text;
  session.unflushed = !flush && (session.unflushed || text !== "");
  session.record.pushes.push({ text, flush });
  if (flush) session.record.flushes++;
  session.chain = session.chain.then(async (ctx) => {
    await ctx.push(text, flush ? { flush: true } : undefined);
    return ctx;
  });
  session.chain.catch((err) => liveFailed(session, err));
}

// finishLive ends the session's context with whatever is still unsent; abandon cancels it
// instead (Clear, sign-out).
function finishLive({ abandon = false } = {}) {
  const session = live;
  if (!session || session.ended) return;
  session.ended = true;
  clearTimeout(session.pauseTimer);
  live = null;
  $("live-finish").disabled = true;

  if (abandon) {
    session.abandoned = true;
    session.player.close();
    session.chain.then((ctx) => quietly(ctx.cancel())).catch(() => {});
    return;
  }

  const text = $("live-text");
  const pending = text.value.startsWith(session.sent) ? text.value.slice(session.sent.length) : "";
  session.sent += pending;
  session.record.pushes.push({ text: pending, flush: false, end: true });
  session.chain = session.chain.then(async (ctx) => {
    await ctx.end(pending);
    return ctx;
  });
  session.chain.catch((err) => liveFailed(session, err));
  setState("live", "finishing", "Speaking the rest…");
  renderLive(session);
  text.value = "";
}

async function readLive(session, ctx, context) {
  const { record, player } = session;
  let done = false;
  try {
    for await (const event of ctx) {
      if (event.type === "chunk") {
        record.chunks.push(event.audio);
        player.push(event.audio);
        $("live-audio").textContent = seconds(player.stats.frames / context.sampleRate);
      } else if (event.type === "flush_done") {
        $("live-flushes").textContent = String(record.flushes);
      } else if (event.type === "done") {
        done = true;
        break;
      }
    }
    if (!done && !session.abandoned) {
      // The socket closed under an open session (an idle close, a network failure).
      liveFailed(session, new PageError("connection_closed",
        "The speech connection closed. Type again to reconnect."));
      return;
    }
    record.complete = true;
    player.end();
    if (live !== session) setState("live", "done", "Done · type again for a new session");
  } catch (err) {
    liveFailed(session, err);
  }
}

function liveFailed(session, err) {
  if (session.failed) return;
  session.failed = true;
  session.ended = true;
  clearTimeout(session.pauseTimer);
  session.player.close();
  if (live === session) live = null;
  $("live-finish").disabled = true;
  fail("live", err, session.record);
}

function renderLive(session) {
  const value = $("live-text").value;
  $("live-sent").textContent = session.sent;
  $("live-pending").textContent = value.startsWith(session.sent)
    ? value.slice(session.sent.length)
    : "";
  $("live-pushes").textContent = String(session.record.pushes.length);
  $("live-flushes").textContent = String(session.record.flushes);
  if (session.edited && live === session) {
    $("live-status").textContent = "Edits to spoken words wait for a new session";
  }
}

function shortId(id) {
  return id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

// ---------------------------------------------------------------------------------------------
// Dictate: WSS /stt/websocket from the microphone.
//
// voxgateDemo.dictate = {run, finals: string[], interim, sentBytes, finalizes, complete,
//   error}

let dictating = null;

function wireDictate() {
  $("dictate-start").addEventListener("click", onDictateStart);
  $("dictate-stop").addEventListener("click", () => stopDictate());
  $("dictate-finalize").addEventListener("click", () => dictating?.finalize());
}

async function onDictateStart() {
  const context = deps.audioContext();
  clearError("dictate");
  stopDictate();
  const run = nextRun("dictate");
  const record = {
    run, finals: [], interim: "", sentBytes: 0, finalizes: 0, complete: false, error: null,
  };
  deps.demo.dictate = record;
  const session = { record, socket: null, capture: null, stopping: false };
  dictating = session;
  resetTranscript();
  setState("dictate", "starting", "Opening the microphone…");
  setDictateButtons(true);

  // A pause after speech finalizes: the server then sends the final transcript.
  let heard = false;
  let silentMs = 0;
  session.finalize = () => {
    if (!session.socket || session.stopping) return;
    record.finalizes++;
    quietly(session.socket.finalize());
    heard = false;
  };
  const onLevel = (level) => {
    if (level >= PAUSE_LEVEL) {
      heard = true;
      silentMs = 0;
    } else if (heard && (silentMs += 100) >= PAUSE_MS && $("dictate-autofinalize").checked) {
      session.finalize();
    }
  };

  const opening = attempt(() => deps.demo.client.stt.websocket({
    model: $("dictate-model").value,
    encoding: STT_FORMAT.encoding,
    sample_rate: STT_FORMAT.sampleRate,
    language: $("dictate-language").value,
  }));
  opening.catch(() => {}); // awaited below; this only keeps it from being "unhandled"
  try {
    session.capture = await startMicrophone(context, STT_FORMAT,
      { levelFill: $("dictate-level"), onLevel });
    $("dictate-device").textContent = deviceText(session.capture.mic, STT_FORMAT);
    session.socket = await opening;
  } catch (err) {
    session.capture?.mic.stop();
    opening.then((s) => s.close()).catch(() => {});
    if (dictating === session) dictating = null;
    setDictateButtons(false);
    resetTranscript("The transcript appears here as you speak.");
    fail("dictate", err, record);
    return;
  }
  if (dictating !== session) {
    session.capture.mic.stop();
    session.socket.close().catch(() => {});
    return;
  }

  session.capture.ready((bytes) => {
    record.sentBytes += bytes.length;
    quietly(session.socket.send(bytes));
  });
  setState("dictate", "listening", "Listening");
  readTranscripts(session);
}

async function readTranscripts(session) {
  const { record } = session;
  try {
    for await (const event of session.socket) {
      if (event.type === "transcript") showTranscript(record, event);
      else if (event.type === "done") break;
    }
    record.complete = true;
    if (dictating === session || session.stopping) setState("dictate", "done", "Stopped");
  } catch (err) {
    fail("dictate", err, record);
  } finally {
    session.capture?.mic.stop();
    if (dictating === session) dictating = null;
    setDictateButtons(false);
    $("dictate-level").style.width = "0%";
  }
}

// stopDictate stops the microphone (its last partial chunk is still sent), then closes the
// socket: the server answers the final transcript and done.
async function stopDictate() {
  const session = dictating;
  if (!session || session.stopping) return;
  session.stopping = true;
  dictating = null;
  setState("dictate", "stopping", "Finishing…");
  $("dictate-stop").disabled = true;
  $("dictate-finalize").disabled = true;
  try {
    await session.capture?.mic.stop();
    await session.socket?.close();
  } catch (err) {
    fail("dictate", err, session.record);
  }
}

function setDictateButtons(running) {
  $("dictate-start").disabled = running;
  $("dictate-stop").disabled = !running;
  $("dictate-finalize").disabled = !running;
}

function resetTranscript(placeholder = "Listening: speak now.") {
  const box = $("dictate-transcript");
  box.replaceChildren(el("p", "transcript-empty muted", placeholder));
}

function showTranscript(record, event) {
  const box = $("dictate-transcript");
  box.querySelector(".transcript-empty")?.remove();
  let interim = box.querySelector(".segment-interim");
  if (!event.isFinal) {
    record.interim = event.text;
    if (!interim) {
      interim = el("p", "segment segment-interim");
      box.append(interim);
    }
    interim.textContent = event.text || "…";
    return;
  }

  record.interim = "";
  record.finals.push(event.text);
  interim?.remove();
  // A finalize over silence answers an empty final: nothing to show.
  if (!event.text) return;
  const segment = el("p", "segment", event.text);
  segment.dataset.final = "true";
  if (event.duration) segment.title = `${seconds(event.duration)} of audio`;
  box.append(segment);
  box.scrollTop = box.scrollHeight;
}

function deviceText(mic, format) {
  const rate = (hz) => `${(hz / 1000).toLocaleString()} kHz`;
  const encoding = format.encoding === "pcm_mulaw" ? "µ-law" : "16-bit PCM";
  return `${mic.label} · ${rate(mic.deviceRate)} → ${rate(format.sampleRate)} ${encoding}`;
}

// ---------------------------------------------------------------------------------------------
// Turns: WSS /stt/turns/websocket from the microphone.
//
// voxgateDemo.turns = {run, options (what client.stt.turns was given), events: string[],
//   turns: [{state, transcript}], complete, error}

let turning = null;

function wireTurns() {
  $("turns-start").addEventListener("click", onTurnsStart);
  $("turns-stop").addEventListener("click", () => stopTurns());
}

async function onTurnsStart() {
  const context = deps.audioContext();
  clearError("turns");
  $("turns-advanced-invalid").hidden = true;
  stopTurns();
  const run = nextRun("turns");
  const options = {
    model: $("turns-model").value,
    encoding: STT_FORMAT.encoding,
    sample_rate: STT_FORMAT.sampleRate,
  };
  const record = { run, options, events: [], turns: [], complete: false, error: null };
  deps.demo.turns = record;
  try {
    Object.assign(options, turnThresholds());
  } catch (err) {
    record.error = { code: err.code, message: err.message };
    deps.demo.lastError = err;
    $("turns-advanced").open = true;
    $("turns-advanced-invalid").textContent = err.message;
    $("turns-advanced-invalid").hidden = false;
    setState("turns", "error", "Check the form");
    return;
  }

  const session = { record, socket: null, capture: null, stopping: false };
  turning = session;
  $("turn-list").replaceChildren();
  $("turns-empty").hidden = false;
  setState("turns", "starting", "Opening the microphone…");
  setTurnsButtons(true);

  const opening = attempt(() => deps.demo.client.stt.turns(options));
  opening.catch(() => {});
  try {
    session.capture = await startMicrophone(context, STT_FORMAT, { levelFill: $("turns-level") });
    session.socket = await opening;
  } catch (err) {
    session.capture?.mic.stop();
    opening.then((s) => s.close()).catch(() => {});
    if (turning === session) turning = null;
    setTurnsButtons(false);
    fail("turns", err, record);
    return;
  }
  if (turning !== session) {
    session.capture.mic.stop();
    session.socket.close().catch(() => {});
    return;
  }

  session.capture.ready((bytes) => quietly(session.socket.send(bytes)));
  setState("turns", "listening", "Listening");
  readTurns(session);
}

async function readTurns(session) {
  const { record } = session;
  try {
    for await (const event of session.socket) {
      record.events.push(event.type);
      onTurnEvent(record, event);
      if (event.type === "done") break;
    }
    record.complete = true;
    if (turning === session || session.stopping) setState("turns", "done", "Stopped");
  } catch (err) {
    fail("turns", err, record);
  } finally {
    session.capture?.mic.stop();
    if (turning === session) turning = null;
    setTurnsButtons(false);
    $("turns-level").style.width = "0%";
  }
}

// turnThresholds reads the advanced turn-detection fields: only values changed from the
// default shown are sent, so an untouched form keeps whatever default the server applies.
// A value outside its documented range throws a PageError naming the field.
function turnThresholds() {
  const out = {};
  for (const input of document.querySelectorAll("#turns-advanced input[data-param]")) {
    input.removeAttribute("aria-invalid");
    // A number field reads "" for text that is not a number: badInput tells it from empty.
    const text = input.value.trim();
    const unreadable = input.validity.badInput;
    if (!unreadable && (text === "" || Number(text) === Number(input.dataset.default))) continue;

    const value = Number(text);
    const min = Number(input.min);
    const max = Number(input.max);
    const integer = input.dataset.integer === "true";
    if (unreadable || !Number.isFinite(value) || value < min || value > max ||
      (integer && !Number.isInteger(value))) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      const name = input.closest(".field").querySelector(".field-label").textContent;
      throw new PageError("invalid_threshold",
        `${name} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max}.`);
    }
    out[input.dataset.param] = value;
  }
  return out;
}

// TURN_LABELS are the words each turn state shows on its card.
const TURN_LABELS = {
  speaking: "Speaking",
  eager: "Probably done",
  ended: "Turn ended",
};

function onTurnEvent(record, event) {
  const list = $("turn-list");
  let turn = record.turns.at(-1);

  switch (event.type) {
    case "connected":
      setState("turns", "listening", "Listening · connected");
      return;
    case "turn.start":
      turn = { state: "speaking", transcript: "" };
      record.turns.push(turn);
      list.append(turnCard(record.turns.length));
      $("turns-empty").hidden = true;
      break;
    case "turn.update":
    case "turn.resume":
      if (!turn || turn.state === "ended") return;
      turn.state = "speaking";
      break;
    case "turn.eager_end":
      if (!turn || turn.state === "ended") return;
      turn.state = "eager";
      break;
    case "turn.end":
      if (!turn || turn.state === "ended") {
        // An end without a start (the start was lost): still show the turn.
        turn = { state: "ended", transcript: "" };
        record.turns.push(turn);
        list.append(turnCard(record.turns.length));
        $("turns-empty").hidden = true;
      }
      turn.state = "ended";
      break;
    default:
      return;
  }
  if (typeof event.transcript === "string") turn.transcript = event.transcript;
  renderTurn(list.lastElementChild, turn);
}

function turnCard(n) {
  const item = el("li", "turn");
  const head = el("div", "turn-head");
  head.append(el("span", "turn-number", `Turn ${n}`), el("span", "badge turn-badge"));
  item.append(head, el("p", "turn-text"));
  return item;
}

function renderTurn(item, turn) {
  item.dataset.state = turn.state;
  const badge = item.querySelector(".turn-badge");
  badge.textContent = TURN_LABELS[turn.state];
  badge.dataset.status = turn.state === "ended" ? "valid" : "expiring";
  item.querySelector(".turn-text").textContent = turn.transcript || "…";
}

async function stopTurns() {
  const session = turning;
  if (!session || session.stopping) return;
  session.stopping = true;
  turning = null;
  setState("turns", "stopping", "Finishing…");
  $("turns-stop").disabled = true;
  try {
    await session.capture?.mic.stop();
    await session.socket?.close();
  } catch (err) {
    fail("turns", err, session.record);
  }
}

function setTurnsButtons(running) {
  $("turns-start").disabled = running;
  $("turns-stop").disabled = !running;
}

// ---------------------------------------------------------------------------------------------
// File: POST /stt or POST /audio/transcriptions.
//
// voxgateDemo.transcription = {run, endpoint, result: {text, language?, duration?, words?},
//   error}

const TRANSCRIBE_ROUTES = { stt: "POST /stt", openai: "POST /audio/transcriptions" };

function wireTranscribe() {
  const input = $("transcribe-file");
  input.addEventListener("change", onFileChosen);
  $("transcribe-endpoint").addEventListener("change", () => {
    $("transcribe-route").textContent = TRANSCRIBE_ROUTES[$("transcribe-endpoint").value];
  });

  const drop = $("transcribe-drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("drop-over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("drop-over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("drop-over");
    if (event.dataTransfer?.files.length) {
      input.files = event.dataTransfer.files;
      onFileChosen();
    }
  });
  $("transcribe-form").addEventListener("submit", onTranscribe);
}

function onFileChosen() {
  const file = $("transcribe-file").files[0];
  $("transcribe-submit").disabled = !file;
  $("transcribe-file-name").textContent = file
    ? `${file.name} · ${formatSize(file.size)}`
    : fileHint();
  $("transcribe-drop").classList.toggle("drop-chosen", Boolean(file));
}

async function onTranscribe(event) {
  event.preventDefault();
  clearError("transcribe");
  const file = $("transcribe-file").files[0];
  const endpoint = $("transcribe-endpoint").value;
  const run = nextRun("transcribe");
  const record = { run, endpoint, result: null, error: null };
  deps.demo.transcription = record;
  $("transcribe-result").hidden = true;

  if (!file) {
    fail("transcribe", new PageError("missing_file", "Choose an audio file first."), record);
    return;
  }
  if (file.size > MAX_UPLOAD) {
    fail("transcribe", new PageError("body_too_large",
      `The file is ${formatSize(file.size)}; the server accepts up to 25 MiB.`), record);
    return;
  }

  const options = {
    model: "ink-whisper",
    language: $("transcribe-language").value,
    timestamps: $("transcribe-timestamps").checked,
    filename: file.name,
  };
  setState("transcribe", "working", "Transcribing…");
  $("transcribe-submit").disabled = true;
  const started = performance.now();
  try {
    const stt = deps.demo.client.stt;
    const result = endpoint === "openai"
      ? await stt.openai(file, options)
      : await stt.transcribe(file, options);
    record.result = result;
    showTranscription(result, performance.now() - started);
    setState("transcribe", "done", "Done");
  } catch (err) {
    fail("transcribe", err, record);
  } finally {
    $("transcribe-submit").disabled = false;
  }
}

function showTranscription(result, elapsedMs) {
  $("transcribe-text").textContent = result.text || "(no speech recognised)";
  $("transcribe-text").classList.toggle("muted", !result.text);
  $("transcribe-duration").textContent = result.duration ? seconds(result.duration) : "—";
  $("transcribe-lang").textContent = result.language ?? "—";
  const words = result.words ?? [];
  $("transcribe-count").textContent = words.length ? String(words.length) : "—";
  $("transcribe-latency").textContent = `${Math.round(elapsedMs)} ms`;
  $("transcribe-words").replaceChildren(...words.map((w) => {
    const chip = el("li", "word-chip");
    chip.append(el("span", "", w.word), el("small", "muted", `${w.start.toFixed(2)}s`));
    chip.title = `${w.start.toFixed(2)} s – ${w.end.toFixed(2)} s`;
    return chip;
  }));
  $("transcribe-result").hidden = false;
}

// fileHint is the drop zone's hint when no file is chosen. The emulator decodes WAV and raw
// PCM only, and raw PCM needs its encoding and rate as query parameters, which this panel
// does not send: through the page the emulator reads WAV files.
function fileHint() {
  return emulator
    ? "The offline emulator reads WAV audio only (no MP3, FLAC, OGG, WebM or M4A), up to 25 MiB"
    : "WAV, MP3, FLAC, OGG, WebM or M4A, up to 25 MiB";
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

// ---------------------------------------------------------------------------------------------
// Agent: WSS /agents/stream/{agent_id}, microphone in, agent audio out.
//
// voxgateDemo.agent = {run, agentId, inputFormat, streamId, events: [{type, ...}],
//   media: Uint8Array[] (agent audio, in inputFormat), sentBytes, clears, closed:
//   {code, reason} | null, error}

let calling = null;

function wireAgent() {
  $("agent-form").addEventListener("submit", onCall);
  $("agent-hangup").addEventListener("click", () => hangUp());
  $("agent-log-clear").addEventListener("click", () => {
    $("agent-log").replaceChildren();
    $("agent-log-empty").hidden = false;
  });
  for (const key of document.querySelectorAll("#agent-keypad button")) {
    key.addEventListener("click", () => sendDigit(key.dataset.digit));
  }
}

async function onCall(event) {
  event.preventDefault();
  const context = deps.audioContext();
  clearError("agent");
  hangUp();

  const agentId = $("agent-id").value.trim();
  const inputFormat = $("agent-format").value;
  const format = AGENT_FORMATS[inputFormat];
  const run = nextRun("agent");
  const record = {
    run, agentId, inputFormat, streamId: null, events: [], media: [], sentBytes: 0, clears: 0,
    closed: null, error: null,
  };
  deps.demo.agent = record;
  if (!AGENT_ID.test(agentId)) {
    fail("agent", new PageError("invalid_agent_id",
      "An agent id is 1 to 128 letters, digits, '-' or '_'."), record);
    return;
  }

  const player = new StreamPlayer(context, format);
  const session = {
    record, player, format, call: null, capture: null, ended: false, timer: 0, reply: null,
  };
  calling = session;
  setState("agent", "connecting", "Calling…");
  setCallButtons(true);
  logAgent("call", `calling ${agentId} · ${inputFormat}`, "out");

  const dialing = attempt(() => deps.demo.client.agent.call(agentId, {
    inputFormat,
    metadata: { from: "voxgate-demo" },
  }));
  dialing.catch(() => {});
  try {
    session.capture = await startMicrophone(context, format,
      { levelFill: $("agent-mic-level") });
    session.call = await dialing;
  } catch (err) {
    session.capture?.mic.stop();
    dialing.then((c) => c.hangup()).catch(() => {});
    endCall(session);
    fail("agent", err, record);
    return;
  }
  if (calling !== session) {
    session.capture.mic.stop();
    quietly(session.call.hangup());
    return;
  }
  record.streamId = session.call.streamId ?? null;
  session.timer = setInterval(() => showLevel($("agent-out-level"), player.level()), 80);
  readAgent(session);
}

async function readAgent(session) {
  const { record, player, call } = session;
  try {
    for await (const event of call) {
      record.events.push(event);
      switch (event.type) {
        case "ack":
          record.streamId = call.streamId ?? record.streamId;
          $("agent-stream").textContent = record.streamId ? `stream ${record.streamId}` : "";
          setState("agent", "live", "Connected · speak");
          setKeypad(true);
          logAgent("ack", "connected; audio flows both ways");
          // Audio before the ack would reach a call that is not configured yet.
          session.capture.ready((bytes) => {
            record.sentBytes += bytes.length;
            quietly(call.sendAudio(bytes));
          });
          break;
        case "media":
          record.media.push(event.audio);
          player.push(event.audio);
          noteReply(session, event.audio);
          break;
        case "clear":
          record.clears++;
          player.clear();
          endReply(session, "cut short");
          logAgent("clear", "you spoke over the agent: playback stopped");
          break;
        case "dtmf":
          logAgent("dtmf", `agent sent ${event.digit}`);
          break;
        case "custom":
          logAgent("custom", JSON.stringify(event.metadata ?? {}));
          break;
        case "transfer_call":
          logAgent("transfer", "the agent asked to transfer the call");
          break;
        default:
          logAgent(event.type, "");
      }
    }
    const closed = await call.closed;
    record.closed = closed;
    logAgent("closed", `${closed.code}${closed.reason ? ` · ${closed.reason}` : ""}`);
    if (!session.ended) setState("agent", "ended", "Call ended");
  } catch (err) {
    if (!session.ended) {
      endCall(session);
      fail("agent", err, record);
      return;
    }
  }
  endCall(session);
}

function sendDigit(digit) {
  const session = calling;
  if (!session?.call) return;
  try {
    quietly(session.call.dtmf(digit));
    logAgent("dtmf", `you pressed ${digit}`, "out");
  } catch (err) {
    fail("agent", err, session.record);
  }
}

// hangUp ends the call from this side; the reader then logs the close.
function hangUp() {
  const session = calling;
  if (!session) return;
  session.ended = true;
  logAgent("hangup", "you hung up", "out");
  try {
    quietly(session.call?.hangup());
  } catch {
    // Already closed.
  }
  endCall(session);
  setState("agent", "ended", "Call ended");
}

// noteReply adds a media frame to the reply being logged, or starts a new log line for it.
function noteReply(session, bytes) {
  let reply = session.reply;
  if (!reply) {
    reply = { bytes: 0, frames: 0, timer: 0, item: logAgent("media", "") };
    session.reply = reply;
  }
  reply.bytes += bytes.length;
  reply.frames++;
  showReply(session, reply, "agent speaking…");
  clearTimeout(reply.timer);
  reply.timer = setTimeout(() => endReply(session), REPLY_GAP_MS);
}

// endReply closes the reply's log line; note says why when it did not just finish.
function endReply(session, note = "") {
  const reply = session.reply;
  if (!reply) return;
  clearTimeout(reply.timer);
  session.reply = null;
  showReply(session, reply, note);
}

function showReply(session, reply, note) {
  const { encoding, sampleRate } = session.format;
  const duration = reply.bytes / SAMPLE_SIZE[encoding] / sampleRate;
  const frames = `${reply.frames} frame${reply.frames === 1 ? "" : "s"}`;
  reply.item.querySelector(".log-text").textContent =
    ["agent reply", `${seconds(duration)} of audio`, frames, note].filter(Boolean).join(" · ");
}

function endCall(session) {
  endReply(session);
  session.ended = true;
  clearInterval(session.timer);
  session.capture?.mic.stop().then(() => {
    $("agent-mic-level").style.width = "0%";
  });
  session.player.end();
  if (calling === session) calling = null;
  setCallButtons(false);
  setKeypad(false);
  $("agent-mic-level").style.width = "0%";
  $("agent-out-level").style.width = "0%";
}

function setCallButtons(active) {
  $("agent-call").disabled = active;
  $("agent-hangup").disabled = !active;
}

function setKeypad(enabled) {
  for (const key of document.querySelectorAll("#agent-keypad button")) key.disabled = !enabled;
}

// logAgent adds a line to the call's event log and returns it; direction "out" marks what
// the page sent.
function logAgent(type, text, direction = "in") {
  const item = el("li", "log-item");
  item.dataset.type = type;
  item.dataset.direction = direction;
  const now = new Date();
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  item.append(
    el("time", "log-time",
      `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`),
    el("span", "log-type", direction === "out" ? `→ ${type}` : `← ${type}`),
    el("span", "log-text", text),
  );
  const log = $("agent-log");
  log.prepend(item);
  while (log.children.length > 80) log.lastElementChild.remove();
  $("agent-log-empty").hidden = true;
  return item;
}
