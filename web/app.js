// app.js drives the voxgate demo page: sign-in, a speak panel that plays what
// client.tts.bytes returns, a live view of the per-grant access tokens, and the tabs that
// switch between the speak panel and the streaming panels of panels.js.
//
// It talks to the server only through the voxgate client (voxgate.js + voxgate.wasm): it never
// sees a token, a cookie or an API key, and it never builds a request URL itself.
//
// For the browser tests it publishes globalThis.voxgateDemo = {client, lastAudio, lastError}
// (panels.js adds one record per streaming panel) and keeps, on the speak panel, data-run (one more per Speak), data-state ("idle",
// "speaking" while the request and decoding run, "played" once the audio is decoded and
// handed to the speakers, "error") and data-playback ("playing" | "ended" | "stopped").
import { load, VoxgateError } from "/voxgate.js";
import { decodePCM, parseWav, toAudioBuffer } from "/audio.js";
import { wirePanels, stopPanels, setUpstream } from "/panels.js";

const GRANTS = [
  { id: "tts", label: "Text to speech" },
  { id: "stt", label: "Speech to text" },
  { id: "agent", label: "Voice agent" },
];

// TICK_MS is how often the token rows redraw: fast enough for a smooth countdown with one
// decimal, slow enough to cost nothing.
const TICK_MS = 250;

// LOG_LIMIT caps the refresh log so a page left open with short tokens stays small.
const LOG_LIMIT = 60;

const $ = (id) => document.getElementById(id);

const demo = { client: null, lastAudio: null, lastError: null };
globalThis.voxgateDemo = demo;

let session = null;
let audio = null; // AudioContext, created on the first Speak (autoplay policy)
let playing = null; // the AudioBufferSourceNode currently playing
let downloadURL = null;
let tickTimer = 0;
const tokenRows = new Map();

// DemoError is a page-side failure (bad input, undecodable audio) shown like a server error;
// one about an input names its field, and is shown next to it.
class DemoError extends Error {
  constructor(code, message, field = "") {
    super(message);
    this.name = "DemoError";
    this.code = code;
    this.field = field;
  }
}

// VOICE_ID is the shape of a Cartesia voice id (a UUID), checked before a custom one is sent.
const VOICE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------------------------
// Start-up and sign-in

// refreshOnDemand is set by ?refresh=on-demand: the client then refreshes a token only when
// a call needs it, so an idle page shows tokens expiring (the browser tests rely on it).
const refreshOnDemand = new URLSearchParams(location.search).get("refresh") === "on-demand";

// proxyOnly is set by ?direct=off: every call then goes through the server's proxy even when
// the server offers direct mode.
const proxyOnly = new URLSearchParams(location.search).get("direct") === "off";

async function start() {
  showRefreshMode();

  let client;
  try {
    client = await load({
      ...(refreshOnDemand ? { proactive: false } : {}),
      ...(proxyOnly ? { direct: false } : {}),
    });
  } catch (err) {
    showFatal(err);
    return;
  }
  demo.client = client;
  for (const type of ["refresh", "refresherror", "expiring", "expired", "sessionend",
    "streamend"]) {
    client.addEventListener(type, (event) => onTokenEvent(type, event.detail ?? {}));
  }

  try {
    const info = await client.info();
    $("emulator-banner").hidden = info.upstream !== "emulator";
    setUpstream(info.upstream);
    if (info.upstream === "emulator") disableMP3();
    $("upstream-name").textContent =
      info.upstream === "emulator" ? "offline emulator" : "Cartesia API";
    showDirectOffer(info.direct);
  } catch (err) {
    showFatal(err);
    return;
  }

  // A session cookie may survive a reload: ask the server who we are before showing the form.
  try {
    showSignedIn(await client.session());
  } catch (err) {
    showSignedOut(err.code === "no_session" ? "" : describe(err).text);
  }

  wireForms();
}

function wireForms() {
  wireTabs();
  wirePanels({ demo, audioContext, showAlert, showInvalid, clearInvalid });
  $("signin-form").addEventListener("submit", onSignIn);
  $("signout").addEventListener("click", onSignOut);
  $("speak-form").addEventListener("submit", onSpeak);
  $("transcript").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("speak-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", stopPlayback);
  $("voice").addEventListener("change", () => {
    const custom = $("voice").value === "custom";
    $("custom-voice-field").hidden = !custom;
    if (custom) $("custom-voice").focus();
    else clearInvalid("custom-voice");
  });
  $("log-clear").addEventListener("click", () => {
    $("refresh-log").replaceChildren();
    $("refresh-log-empty").hidden = false;
  });
  $("signin-submit").disabled = false;
}

async function onSignIn(event) {
  event.preventDefault();
  const button = $("signin-submit");
  const username = $("username").value.trim();
  const password = $("password").value;
  hide("signin-error");
  hide("signin-notice");

  if (!username || !password) {
    showAlert("signin-error", new DemoError("missing_fields", "Enter a username and a password."));
    return;
  }

  button.disabled = true;
  button.textContent = "Signing in…";
  try {
    const s = await demo.client.login(username, password);
    $("password").value = "";
    showSignedIn(s);
  } catch (err) {
    showAlert("signin-error", err);
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

async function onSignOut() {
  $("signout").disabled = true;
  try {
    await demo.client.logout();
    showSignedOut("You are signed out.");
  } catch (err) {
    showSignedOut(describe(err).text);
  } finally {
    $("signout").disabled = false;
  }
}

function showSignedIn(s) {
  session = s;
  document.body.dataset.app = "signed-in";
  show("workspace");
  show("token-panel");
  hide("signin-panel");
  hide("loading-panel");
  show("signout");

  const until = s.session_expires_at ? new Date(s.session_expires_at) : null;
  $("account-status").replaceChildren(
    el("span", "account-prefix", "Signed in as "), el("span", "account-user", s.user));
  // The tooltip keeps the whole sentence: a phone shows only the user's name.
  $("account-status").title = `Signed in as ${s.user}` +
    (until ? ` · session until ${until.toLocaleString()}` : "");

  buildTokenRows(new Set(s.grants ?? []));
  clearInterval(tickTimer);
  tickTimer = setInterval(renderTokens, TICK_MS);
  renderTokens();
}

function showSignedOut(notice) {
  session = null;
  document.body.dataset.app = "signed-out";
  stopPlayback();
  stopPanels();
  clearInterval(tickTimer);
  hide("workspace");
  hide("token-panel");
  hide("loading-panel");
  hide("signout");
  show("signin-panel");
  $("account-status").textContent = "Signed out";
  $("account-status").title = "";
  $("signin-notice").textContent = notice ?? "";
  $("signin-notice").hidden = !notice;
  $($("username").value ? "password" : "username").focus();
}

// disableMP3 greys out the MP3 output option: the emulator answers it with an error (it has
// no MP3 encoder). The option stays in the list, with a note, so the choice is not a mystery.
function disableMP3() {
  for (const option of $("format").options) {
    if (!option.value.startsWith("mp3:")) continue;
    option.disabled = true;
    option.textContent += " (not in the emulator)";
  }
}

function showRefreshMode() {
  $("refresh-mode").textContent = refreshOnDemand ? "on demand" : "ahead of expiry";
  const link = $("refresh-mode-switch");
  link.href = refreshOnDemand ? "/" : "/?refresh=on-demand";
  link.textContent = refreshOnDemand ? "switch to ahead of expiry" : "switch to on demand";
}

function showFatal(err) {
  document.body.dataset.app = "error";
  hide("loading-panel");
  show("fatal-panel");
  $("account-status").textContent = "Unavailable";
  showAlert("fatal-error", err);
}

// ---------------------------------------------------------------------------------------------
// Tabs: one panel of the workspace at a time. The open tab is kept in the URL hash, so a
// reload (or a link) opens the same panel.

function wireTabs() {
  const tabs = [...document.querySelectorAll(".tab")];
  for (const tab of tabs) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  document.querySelector(".tabs").addEventListener("keydown", (event) => {
    const index = tabs.indexOf(document.activeElement);
    if (index < 0 || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
    const next = tabs[(index + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next.dataset.tab);
    next.focus();
  });
  const fromHash = location.hash.slice(1);
  if (tabs.some((t) => t.dataset.tab === fromHash)) selectTab(fromHash);
}

function selectTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    const selected = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !selected;
  }
  document.body.dataset.tab = name;
  if (location.hash.slice(1) !== name) history.replaceState(null, "", `#${name}`);
}

// ---------------------------------------------------------------------------------------------
// Speak

function onSpeak(event) {
  event.preventDefault();

  // The AudioContext must be created or resumed inside the click, before the first await:
  // the token refresh and the request are awaits, and a context started after them stays
  // suspended under the autoplay policy.
  const context = audioContext();

  let request;
  try {
    request = buildRequest();
  } catch (err) {
    failSpeak(err);
    return;
  }
  speak(context, request);
}

function audioContext() {
  if (!audio) audio = new AudioContext();
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return audio;
}

function buildRequest() {
  const transcript = $("transcript").value;
  if (!transcript.trim()) {
    throw new DemoError("missing_text", "Type some text to speak.", "transcript");
  }

  let voice = $("voice").value;
  if (voice === "custom") {
    voice = $("custom-voice").value.trim();
    if (!voice) {
      throw new DemoError("missing_voice", "Enter a voice id or pick a voice.", "custom-voice");
    }
    if (!VOICE_ID.test(voice)) {
      throw new DemoError("invalid_voice_id",
        "This is not a UUID: check the voice id (36 characters, 8-4-4-4-12).", "custom-voice");
    }
  }

  const [container, a, b] = $("format").value.split(":");
  const outputFormat =
    container === "mp3"
      ? { container, bit_rate: Number(a), sample_rate: Number(b) }
      : { container, encoding: a, sample_rate: Number(b) };

  return {
    model_id: $("model").value,
    transcript,
    voice: { mode: "id", id: voice },
    output_format: outputFormat,
    language: $("language").value,
  };
}

async function speak(context, request) {
  const panel = $("speak-panel");
  panel.dataset.run = String(Number(panel.dataset.run) + 1);
  setSpeakState("speaking", "Speaking…");
  demo.lastError = null;
  hide("speak-error");
  clearInvalid("transcript");
  clearInvalid("custom-voice");
  $("speak").disabled = true;
  stopPlayback();

  const started = performance.now();
  try {
    const bytes = await demo.client.tts.bytes(request);
    const elapsed = performance.now() - started;
    demo.lastAudio = { bytes, format: request.output_format };

    const buffer = await decodeAudio(context, bytes, request.output_format);
    play(context, buffer);
    showResult(bytes, buffer, request.output_format, elapsed);
    setSpeakState("played", `Playing · ${formatSeconds(buffer.duration)}`);
  } catch (err) {
    failSpeak(err);
  } finally {
    $("speak").disabled = false;
  }
}

function failSpeak(err) {
  demo.lastError = err;
  clearResult();
  if (err?.field) {
    showInvalid(err.field, err.message);
    setSpeakState("error", "Check the form");
    return;
  }
  showAlert("speak-error", err);
  setSpeakState("error", "Failed");
}

// clearResult hides the last result and drops its "Save audio" link: after a failure they
// would describe audio that is not what the form asked for.
function clearResult() {
  hide("speak-result");
  const link = $("result-download");
  link.hidden = true;
  link.removeAttribute("href");
  if (downloadURL) URL.revokeObjectURL(downloadURL);
  downloadURL = null;
}

function setSpeakState(state, label) {
  $("speak-panel").dataset.state = state;
  $("speak-status").textContent = label;
  $("speak-status").dataset.state = state;
}

function play(context, buffer) {
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(context.destination);
  source.addEventListener("ended", () => {
    if (playing !== source) return;
    playing = null;
    $("stop").disabled = true;
    $("speak-panel").dataset.playback = "ended";
    if ($("speak-panel").dataset.state === "played") $("speak-status").textContent = "Played";
  });
  playing = source;
  $("stop").disabled = false;
  $("speak-panel").dataset.playback = "playing";
  source.start();
}

function stopPlayback() {
  if (!playing) return;
  const source = playing;
  playing = null;
  try {
    source.stop();
  } catch {
    // Already stopped: nothing to do.
  }
  $("stop").disabled = true;
  $("speak-panel").dataset.playback = "stopped";
  // The ended handler ignores a source that is no longer playing, so the label is set here.
  if ($("speak-panel").dataset.state === "played") $("speak-status").textContent = "Stopped";
}

function showResult(bytes, buffer, format, elapsedMs) {
  $("result-duration").textContent = formatSeconds(buffer.duration);
  $("result-bytes").textContent = formatBytes(bytes.length);
  $("result-format").textContent = describeFormat(format);
  $("result-latency").textContent = `${Math.round(elapsedMs)} ms`;

  if (downloadURL) URL.revokeObjectURL(downloadURL);
  const type = { wav: "audio/wav", mp3: "audio/mpeg" }[format.container] ?? "";
  downloadURL = URL.createObjectURL(new Blob([bytes], { type }));
  const link = $("result-download");
  link.href = downloadURL;
  link.download = `voxgate.${{ wav: "wav", mp3: "mp3" }[format.container] ?? "pcm"}`;
  link.hidden = false;
  show("speak-result");
}

// ---------------------------------------------------------------------------------------------
// Audio decoding: WAV and raw PCM are decoded here (all four Cartesia encodings) so every
// format plays at exactly its own sample rate; only MP3 goes through decodeAudioData.

async function decodeAudio(context, bytes, format) {
  if (format.container === "mp3") {
    try {
      // decodeAudioData detaches the buffer it is given: hand it a copy so lastAudio stays.
      return await context.decodeAudioData(bytes.slice().buffer);
    } catch (err) {
      throw new DemoError("decode_failed", `The browser could not decode the MP3: ${err.message}`);
    }
  }

  if (format.container === "wav") {
    const wav = parseWav(bytes);
    return toAudioBuffer(context, decodePCM(wav.data, wav.encoding), wav.sampleRate, wav.channels);
  }
  // Limitation: raw audio is played as mono. It has no header to say otherwise, and
  // Cartesia's TTS output is mono.
  return toAudioBuffer(context, decodePCM(bytes, format.encoding), format.sample_rate, 1);
}

// ---------------------------------------------------------------------------------------------
// Token panel

// showDirectOffer says in the token panel which grants the server lets the page use
// directly (direct mode), or nothing when it does not.
function showDirectOffer(direct) {
  const note = $("direct-note");
  const on = Boolean(direct) && !proxyOnly;
  for (const node of document.querySelectorAll("[data-direct-only]")) node.hidden = !on;
  for (const node of document.querySelectorAll("[data-proxy-only]")) node.hidden = on;
  if (!on) {
    note.hidden = true;
    return;
  }
  note.hidden = false;
  $("direct-grants").textContent = direct.grants.join(", ");
  $("direct-upstream").textContent = direct.upstream;
}

function buildTokenRows(granted) {
  const container = $("token-rows");
  container.replaceChildren();
  tokenRows.clear();

  for (const { id, label } of GRANTS) {
    const row = el("div", "token-row");
    row.dataset.grant = id;
    row.dataset.status = granted.has(id) ? "none" : "forbidden";

    const head = el("div", "token-head");
    const name = el("div", "token-name");
    name.append(el("code", "token-grant", id), el("span", "token-label muted small", label));
    const badge = el("span", "badge");
    head.append(name, badge);

    const countdown = el("div", "token-countdown", "—");
    const meter = el("div", "meter");
    const fill = el("div", "meter-fill");
    meter.append(fill);

    const facts = el("dl", "token-facts");
    const fact = (term, title = "") => {
      const wrap = el("div");
      wrap.title = title;
      const value = el("dd", "", "—");
      wrap.append(el("dt", "", term), value);
      facts.append(wrap);
      return value;
    };
    const lifetime = fact("Lifetime");
    const margin = fact("Margin", "Refreshed this long before it expires");
    const refreshes = fact("Refreshes");
    const mode = fact("Held by",
      "server: the token lives in an httpOnly cookie and calls go through this server's " +
      "proxy. wasm: direct mode, the token lives only in the wasm module's memory and calls " +
      "go straight to the upstream.");
    const skew = fact("Offset",
      "The server's clock minus this browser's clock. Information only: expiry never " +
      "depends on it (see the note below the tokens).");

    const foot = el("div", "token-foot");
    const error = el("span", "token-error small");
    const button = el("button", "btn btn-quiet btn-small", "Refresh now");
    button.type = "button";
    button.disabled = !granted.has(id);
    button.addEventListener("click", () => refreshNow(id, button));
    foot.append(error, button);

    row.append(head, countdown, meter, facts, foot);
    container.append(row);
    tokenRows.set(id, {
      row, badge, countdown, fill, lifetime, margin, refreshes, mode, skew, error, button,
      granted: granted.has(id),
    });
  }
}

async function refreshNow(grant, button) {
  button.disabled = true;
  try {
    await demo.client.tokens.refresh(grant);
  } catch {
    // The "refresherror" event already put the failure in the log and the row.
  } finally {
    button.disabled = false;
    renderTokens();
  }
}

function renderTokens() {
  if (!session || !demo.client) return;
  for (const [grant, view] of tokenRows) {
    if (!view.granted) {
      setBadge(view, "forbidden", "not granted");
      view.countdown.textContent = "—";
      view.row.dataset.remainingMs = "0";
      continue;
    }

    let state;
    try {
      state = demo.client.tokens.state(grant);
    } catch {
      continue;
    }
    const remaining = Math.max(0, state.remainingMs ?? 0);
    const minted = (state.refreshes ?? 0) > 0 || (state.lifetimeMs ?? 0) > 0;

    let status = "none";
    if (state.refreshing) status = "refreshing";
    else if (!minted) status = "none";
    else if (remaining <= 0) status = "expired";
    else if (state.valid) status = "valid";
    else status = "expiring";
    setBadge(view, status, {
      none: "no token yet", refreshing: "refreshing…", expired: "expired",
      valid: "valid", expiring: "in margin",
    }[status]);

    view.row.dataset.remainingMs = String(Math.round(remaining));
    view.countdown.textContent = minted ? formatCountdown(remaining) : "—";
    const fraction = state.lifetimeMs > 0 ? Math.min(1, remaining / state.lifetimeMs) : 0;
    view.fill.style.width = `${(fraction * 100).toFixed(1)}%`;

    view.lifetime.textContent = state.lifetimeMs ? formatSeconds(state.lifetimeMs / 1000) : "—";
    view.margin.textContent = state.marginMs ? formatSeconds(state.marginMs / 1000) : "—";
    view.refreshes.textContent = String(state.refreshes ?? 0);
    view.mode.textContent = state.direct ? "wasm" : minted ? "server" : "—";
    view.row.dataset.direct = state.direct ? "true" : "false";
    view.skew.textContent = minted ? formatOffset(state.clockOffsetMs ?? 0) : "—";
    view.error.textContent = state.lastError
      ? `${state.lastError.code}: ${state.lastError.message}`
      : "";
  }
}

function setBadge(view, status, label) {
  view.row.dataset.status = status;
  view.badge.dataset.status = status;
  view.badge.textContent = label;
}

function onTokenEvent(type, detail) {
  // The session check at start-up answers no_session for a visitor who has not signed in
  // yet; that is not a session ending, so it stays out of the log.
  if (type === "sessionend" && !session) return;

  addLogEntry(type, detail);
  renderTokens();
  if (type === "sessionend" && session) showSignedOut("Your session ended. Sign in again.");
}

function addLogEntry(type, detail) {
  const item = el("li", "log-item");
  item.dataset.type = type;
  if (detail.grant) item.dataset.grant = detail.grant;
  if (detail.reason) item.dataset.reason = detail.reason;

  const time = el("time", "log-time", formatClock(new Date()));
  const kind = el("span", "log-type", type);
  const grant = el("code", "log-grant", detail.grant ?? "—");
  const text = el("span", "log-text", logText(type, detail));
  item.append(time, kind, grant, text);

  const log = $("refresh-log");
  log.prepend(item);
  while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
  $("refresh-log-empty").hidden = true;
}

function logText(type, detail) {
  const state = detail.state ?? {};
  const reason = detail.reason ? `${detail.reason}` : "";
  switch (type) {
    case "refresh": {
      const seconds = state.lifetimeMs / 1000;
      const lifetime = seconds ? `new token for ${formatSeconds(seconds)}` : "";
      return [reason, lifetime].filter(Boolean).join(" · ");
    }
    case "refresherror":
      return [reason, detail.error ? describe(detail.error).text : ""].filter(Boolean).join(" · ");
    case "expiring":
      return refreshOnDemand
        ? "entered its margin: the next call refreshes it first"
        : "entered its margin: refreshing ahead of expiry";
    case "expired":
      return "token lifetime ran out";
    case "sessionend":
      return reason || "signed out";
    case "streamend":
      return `socket closed: ${detail.kind === "expired" ? "token expired" : "session ended"}` +
        (reason ? ` · ${reason}` : "");
    default:
      return reason;
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function showAlert(id, err) {
  const { code, text, detail } = describe(err);
  const box = $(id);
  box.replaceChildren();
  const head = el("div", "alert-head");
  head.append(el("code", "alert-code", code), el("span", "alert-text", text));
  box.append(head);
  if (detail) box.append(el("div", "alert-detail", detail));
  box.dataset.code = code;
  box.hidden = false;
}

// showInvalid shows a page-side input error under its field (the element "<id>-invalid")
// and marks the field invalid; editing the field clears it.
function showInvalid(fieldId, message) {
  const field = $(fieldId);
  const note = $(`${fieldId}-invalid`);
  note.textContent = message;
  note.hidden = false;
  field.setAttribute("aria-invalid", "true");
  field.setAttribute("aria-describedby", note.id);
  field.addEventListener("input", () => clearInvalid(fieldId), { once: true });
  field.focus();
}

function clearInvalid(fieldId) {
  $(fieldId).removeAttribute("aria-invalid");
  $(`${fieldId}-invalid`).hidden = true;
}

// describe turns any failure into a code, a sentence and optional upstream details.
function describe(err) {
  const code = err?.code || (err instanceof VoxgateError ? "error" : "client_error");
  const text = err?.message || String(err);
  const parts = [];
  if (err?.status) parts.push(`HTTP ${err.status}`);
  if (err?.grant) parts.push(`grant ${err.grant}`);
  const up = err?.upstream;
  if (up) {
    const upstreamParts = [up.error_code, up.title].filter(Boolean).join(" · ");
    parts.push(`upstream ${up.status ?? ""} ${upstreamParts}`.trim());
    if (up.request_id) parts.push(`request ${up.request_id}`);
  }
  return { code, text, detail: parts.join(" · ") };
}

function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function show(id) {
  $(id).hidden = false;
}

function hide(id) {
  $(id).hidden = true;
}

function describeFormat(format) {
  const rate = `${(format.sample_rate / 1000).toLocaleString()} kHz`;
  if (format.container === "mp3") return `MP3 · ${format.bit_rate / 1000} kbit/s · ${rate}`;
  return `${format.container.toUpperCase()} · ${format.encoding} · ${rate}`;
}

function formatSeconds(seconds) {
  if (seconds >= 60) {
    const rest = Math.round(seconds % 60);
    return `${Math.floor(seconds / 60)} min${rest ? ` ${rest} s` : ""}`;
  }
  return `${seconds < 10 ? seconds.toFixed(2).replace(/\.?0+$/, "") : Math.round(seconds)} s`;
}

function formatCountdown(ms) {
  const tenths = Math.floor(ms / 100);
  const minutes = Math.floor(tenths / 600);
  const seconds = ((tenths % 600) / 10).toFixed(1);
  return minutes > 0 ? `${minutes}:${seconds.padStart(4, "0")}` : `${seconds} s`;
}

function formatOffset(ms) {
  if (Math.abs(ms) < 1000) return `${ms >= 0 ? "+" : "−"}${Math.abs(Math.round(ms))} ms`;
  return `${ms >= 0 ? "+" : "−"}${(Math.abs(ms) / 1000).toFixed(1)} s`;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function formatClock(date) {
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `.${pad(date.getMilliseconds(), 3)}`;
}

start();
