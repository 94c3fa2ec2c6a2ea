// voxgate.js loads voxgate.wasm (the Go client) and gives the page a typed, promise-based
// client. It owns the page side of the contract with the wasm module: loading the Go
// runtime glue, starting the module, the one registration hook, and turning the module's
// plain error objects into VoxgateError. It never sees a token: the server keeps tokens in
// httpOnly cookies. Types and documentation: voxgate.d.ts.

/** The grants the server mints tokens for. */
export const GRANTS = Object.freeze(["tts", "stt", "agent"]);

const TOKEN_EVENTS = new Set(["refresh", "refresherror", "expiring", "expired"]);

/** Every failure of the client: the server's error code, or a client code. */
export class VoxgateError extends Error {
  constructor({ code, status = 0, message = "", grant = null, upstream = null, retryAfterMs = 0 },
    options) {
    super(message || code, options);
    this.name = "VoxgateError";
    this.code = code;
    this.status = status;
    this.grant = grant;
    this.upstream = upstream;
    this.retryAfterMs = retryAfterMs;
  }
}

/** toError turns whatever the module rejected with into a VoxgateError. */
function toError(reason) {
  if (reason instanceof VoxgateError) return reason;
  if (reason && typeof reason === "object" && typeof reason.code === "string") {
    return new VoxgateError(reason);
  }
  const message = reason instanceof Error ? reason.message : String(reason);
  return new VoxgateError({ code: "internal", message }, { cause: reason });
}

/** The BroadcastChannel on which tabs share new tokens' metadata, and the prefix of the
 * Web Lock per grant that lets one tab at a time refresh. */
export const TABS_CHANNEL = "voxgate-tokens";
export const LOCK_PREFIX = "voxgate-refresh-";

/** LOCK_SETTLE_MS: a tab that just got a refresh lock lets the event loop run this long, so
 * the token its predecessor posted before releasing the lock arrives before the module
 * looks for it (the browser delivers the two as separate tasks). */
const LOCK_SETTLE_MS = 5;

/** crossTab is the browser side of the module's cross-tab coordinator (cmd/voxgate/tabs.go):
 * Web Locks, which the browser releases when a tab closes, and a BroadcastChannel. Either
 * may be missing; the module then refreshes on its own.
 *
 * Limitation: when a lock grant reaches a tab more than LOCK_SETTLE_MS before the token its
 * predecessor posted, that tab refreshes once more than needed (nothing fails). */
function crossTab(enabled) {
  const locks = enabled ? globalThis.navigator?.locks : undefined;
  const channel = enabled && typeof BroadcastChannel === "function"
    ? new BroadcastChannel(TABS_CHANNEL) : null;
  return {
    hook: locks || channel ? {
      // lock(grant) -> Promise<release | null>; release() lets the next tab in.
      lock: (grant) => new Promise((granted) => {
        if (!locks) { granted(null); return; }
        locks.request(LOCK_PREFIX + grant, () => new Promise((release) => {
          setTimeout(() => granted(() => release()), LOCK_SETTLE_MS);
        })).catch(() => granted(null));
      }),
      publish: (text) => channel?.postMessage(JSON.parse(text)),
    } : {},
    subscribe: (adopt) => {
      if (channel) channel.onmessage = (e) => adopt(JSON.stringify(e.data));
    },
    close: () => channel?.close(),
  };
}

/** watchPage runs check whenever timers may have run late: the page became visible, got
 * focus, came back online or was restored from the back/forward cache. (The module's own
 * wake detector covers sleep.) Returns the function that stops watching. */
function watchPage(check) {
  const targets = [[globalThis.document, "visibilitychange"], [globalThis, "focus"],
    [globalThis, "online"], [globalThis, "pageshow"]];
  const run = () => { if (globalThis.document?.visibilityState !== "hidden") check(); };
  for (const [target, type] of targets) target?.addEventListener?.(type, run);
  return () => { for (const [target, type] of targets) target?.removeEventListener?.(type, run); };
}

/** streamEndKind classifies a WebSocket close: "expired" or "session" for the server's
 * 1008 closes about the token or the session, null otherwise. */
export function streamEndKind({ code, reason } = {}) {
  if (code !== 1008) return null;
  const r = String(reason ?? "").toLowerCase();
  if (r.includes("expired")) return "expired";
  if (r.includes("session ended")) return "session";
  return null;
}

/** The client returned by load(). Events: refresh, refresherror, expiring, expired,
 * sessionend, streamend, and token (an alias of refresh). */
class Client extends EventTarget {
  #api = null;
  #closed = false;
  #stop = null;

  /** @param {(link: {attach(api: object, stop: () => void): void,
   *  event(type: string, detail: object): void}) => void} connect receives the two
   *  functions load() needs; nothing else can reach them. */
  constructor(connect) {
    super();
    connect({
      attach: (api, stop) => { this.#api = api; this.#stop = stop; },
      event: (type, detail) => this.#dispatch(type, detail),
    });

    /** Text-to-speech. */
    this.tts = Object.freeze({
      bytes: (request, { signal } = {}) => {
        if (signal?.aborted) {
          return Promise.reject(new VoxgateError(
            { code: "aborted", message: "the request was aborted before it started" },
            { cause: signal.reason }));
        }
        let body;
        try {
          body = typeof request === "string" ? request : JSON.stringify(request);
        } catch (e) {
          return Promise.reject(new VoxgateError(
            { code: "invalid_request", message: `request is not JSON: ${e.message}` }));
        }
        return this.#call("ttsBytes", body, signal);
      },
      sse: (request, { signal } = {}) => {
        const id = this.#value("ttsSSE", json(request, "request"), signal);
        return new TTSStream(this.#link, id);
      },
      websocket: async ({ signal } = {}) => {
        const id = await this.#call("ttsSocket", signal);
        return new TTSSocket(this.#link, id);
      },
    });

    /** Speech-to-text. */
    this.stt = Object.freeze({
      websocket: (options, { signal } = {}) => this.#socket(STTSocket, "sttSocket",
        json(options, "options"), false, signal),
      turns: (options, { signal } = {}) => this.#socket(STTSocket, "sttSocket",
        json(options, "options"), true, signal),
      transcribe: (file, options = {}, { signal } = {}) =>
        this.#transcribe(file, options, false, signal),
      openai: (file, options = {}, { signal } = {}) =>
        this.#transcribe(file, options, true, signal),
    });

    /** Voice agents. */
    this.agent = Object.freeze({
      call: async (agentId, options = {}, { signal } = {}) => {
        const opened = await this.#call("agentCall", String(agentId),
          json(options, "options"), signal);
        return new AgentCall(this.#link, opened.id, opened.streamId);
      },
    });

    /** Token states per grant, and explicit refresh. */
    this.tokens = Object.freeze({
      // The module sends token states as JSON text (see cmd/voxgate/bridge.go).
      state: (grant) => JSON.parse(this.#sync("tokenState", String(grant))),
      states: () => JSON.parse(this.#sync("tokenStates")),
      refresh: async (grant) => JSON.parse(await this.#call("refresh", String(grant))),
    });
  }

  /** Sign in; resolves with the server's session object. */
  async login(username, password) {
    return JSON.parse(await this.#call("login", String(username), String(password)));
  }

  /** Sign out; every token is forgotten and "sessionend" fires. */
  async logout() {
    await this.#call("logout");
  }

  /** Who is signed in; rejects with code "no_session" when nobody is. */
  async session() {
    return JSON.parse(await this.#call("session"));
  }

  /** What the server offers before sign-in. */
  async info() {
    return JSON.parse(await this.#call("info"));
  }

  /** Test hook: open stream handles in the module and live Go functions handed to
   * JavaScript. Both return to their earlier values once every stream has ended. */
  _stats() {
    return this.#sync("stats");
  }

  /** Whether close() was called. */
  get closed() {
    return this.#closed;
  }

  /** Stops the module: pending calls reject with code "closed", timers stop, the wasm
   * program exits. Safe to call more than once. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop?.();
    this.#api?.close();
    this.#api = null;
  }

  #dispatch(type, detail) {
    const d = {
      grant: detail?.grant ?? null,
      reason: detail?.reason ?? null,
      state: detail?.state ? JSON.parse(detail.state) : null,
      error: detail?.error ? toError(detail.error) : null,
    };
    if (type === "streamend") Object.assign(d, { code: detail.code, kind: detail.kind });
    this.dispatchEvent(new CustomEvent(type, { detail: d }));
    if (type === "refresh") this.dispatchEvent(new CustomEvent("token", { detail: d }));
  }

  /** What stream objects need to reach the module. */
  get #link() {
    return {
      call: (m, ...a) => this.#call(m, ...a),
      value: (m, ...a) => this.#value(m, ...a),
      // ended(grant, closed): reports a socket the server closed over its token or session.
      ended: (grant, closed) => closed.then((st) => {
        const kind = streamEndKind(st);
        if (kind && !this.#closed) {
          this.#dispatch("streamend", { grant, reason: st.reason, code: st.code, kind });
        }
      }, () => {}),
    };
  }

  async #socket(Kind, method, options, turns, signal) {
    const id = await this.#call(method, options, turns, signal);
    return new Kind(this.#link, id, turns, options);
  }

  async #transcribe(file, options, openai, signal) {
    const opts = { ...options };
    if (opts.filename === undefined && typeof file?.name === "string") opts.filename = file.name;
    return JSON.parse(await this.#call("transcribe", file, json(opts, "options"), openai,
      signal));
  }

  /** Calls a synchronous module method that answers {value} or {error}. */
  #value(method, ...args) {
    const r = this.#sync(method, ...args);
    if (r?.error) throw toError(r.error);
    return r?.value;
  }

  #closedError() {
    return new VoxgateError({ code: "closed", message: "the client is closed" });
  }

  async #call(method, ...args) {
    if (this.#closed || !this.#api) throw this.#closedError();
    try {
      return await this.#api[method](...args);
    } catch (e) {
      throw toError(e);
    }
  }

  #sync(method, ...args) {
    if (this.#closed || !this.#api) throw this.#closedError();
    return this.#api[method](...args);
  }
}

/** json encodes a request object (a string passes as is) or throws invalid_request. */
function json(value, name) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value ?? {});
  } catch (e) {
    throw new VoxgateError({ code: "invalid_request", message: `${name} is not JSON: ${e.message}` });
  }
}

/** Stream is the base of every iterable stream: a handle id in the module, read with
 * next(id) one event at a time (the module reads the network only as events are pulled). */
class Stream {
  #link;
  #id;
  #ended = false;
  #started = false;

  constructor(link, id) {
    this.#link = link;
    this.#id = id;
  }

  get _link() { return this.#link; }
  get _id() { return this.#id; }

  /** Calls a module method that answers {value} or {error} with this stream's id. */
  _value(method, ...args) {
    return this.#link.value(method, this.#id, ...args);
  }

  /** Sends on the stream (module method send(id, op, value, flag)); resolves once the
   * frame is queued. */
  _send(op, value, flag) {
    try {
      this._value("send", op, value, flag);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Stops reading: queued events are dropped (sockets: closed). */
  _release() {
    if (this.#ended) return;
    this.#ended = true;
    try { this.#link.value("release", this.#id); } catch { /* module closed */ }
  }

  /** A socket whose events were never iterated is released when it closes, so its
   * handle in the module does not outlive it; start iterating before the socket closes. */
  _releaseUnreadOnClose(closed) {
    closed.then(() => { if (!this.#started) this._release(); }, () => {});
  }

  [Symbol.asyncIterator]() {
    this.#started = true;
    return {
      next: async () => {
        if (this.#ended) return { done: true, value: undefined };
        let event;
        try {
          event = await this.#link.call("next", this.#id);
        } catch (e) {
          this.#ended = true;
          throw e;
        }
        if (event === null || event === undefined) {
          this.#ended = true;
          return { done: true, value: undefined };
        }
        // The module sends [fields as JSON, audio or null] (see cmd/voxgate/events.go).
        const value = JSON.parse(event[0]);
        if (event[1]) value.audio = event[1];
        return { done: false, value };
      },
      return: async () => {
        this._release();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() { return this; },
    };
  }
}

/** The events of one POST /tts/sse. */
class TTSStream extends Stream {
  /** Stops the stream and aborts the request. */
  cancel() { this._release(); }
}

/** A socket's close, as {code, reason}, from the module. */
function closedPromise(link, id) {
  const p = link.call("closed", id);
  p.catch(() => {}); // a page that never awaits it should not see an unhandled rejection
  return p;
}

/** One /tts/websocket connection carrying contexts. */
class TTSSocket {
  #link;
  #id;

  constructor(link, id) {
    this.#link = link;
    this.#id = id;
    /** Resolves with {code, reason} once the socket has closed. */
    this.closed = closedPromise(link, id);
    link.ended("tts", this.closed);
  }

  /** Closes this socket (if open) and opens a new one, its tts token checked (and
   * refreshed when needed) first. Contexts do not move: start them on the new socket. */
  async reconnect({ signal } = {}) {
    this.close();
    return new TTSSocket(this.#link, await this.#link.call("ttsSocket", signal));
  }

  /** Starts a context with the fields every input repeats; id generated when omitted. */
  context(request, id) {
    const r = this.#link.value("ttsContext", this.#id, json(request, "request"), id ?? null);
    return new TTSContext(this.#link, r.id, r.contextId);
  }

  /** Closes the socket with 1000; open contexts end. */
  close() {
    try { this.#link.value("closeSocket", this.#id); } catch { /* already closed */ }
  }
}

/** One context on a TTSSocket. */
class TTSContext extends Stream {
  constructor(link, id, contextId) {
    super(link, id);
    /** The context_id sent to Cartesia. */
    this.id = contextId;
  }

  /** Sends text with continue:true (and flush:true when asked). */
  push(text, { flush = false } = {}) { return this._send("push", String(text), !!flush); }

  /** Sends the last text (may be empty) with continue:false. */
  end(text = "") { return this._send("end", String(text)); }

  /** Sends {context_id, cancel:true}; the context's events end at once. */
  cancel() { return this._send("cancel"); }
}

/** One /stt/websocket or /stt/turns/websocket connection. */
class STTSocket extends Stream {
  #closed = false;
  #options;

  constructor(link, id, turns, options) {
    super(link, id);
    this.turns = turns;
    this.#options = options;
    /** Resolves with {code, reason} once the socket has closed. */
    this.closed = closedPromise(link, id);
    this._releaseUnreadOnClose(this.closed);
    link.ended("stt", this.closed);
  }

  /** Aborts this socket (if open) and opens a new one with the same options, its stt
   * token checked (and refreshed when needed) first. Audio not yet transcribed is lost. */
  async reconnect({ signal } = {}) {
    this.#closed = true;
    try { this._value("closeSocket"); } catch { /* already closed */ }
    const id = await this._link.call("sttSocket", this.#options, this.turns, signal);
    return new STTSocket(this._link, id, this.turns, this.#options);
  }

  /** Sends one binary audio frame; resolves once the browser has queued it. */
  send(audio) { return this._send("audio", audio); }

  /** Asks for the final transcript so far (manual finalize only). */
  finalize() { return this._send("finalize"); }

  /** Sends new turn thresholds (turns only). */
  configure(turn) { return this._send("configure", json(turn, "config")); }

  /** Sends close, waits for the server's done (at most 10 s), then closes the socket. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    await this._link.call("sttClose", this._id);
  }
}

/** One call to a voice agent. */
class AgentCall extends Stream {
  constructor(link, id, streamId) {
    super(link, id);
    /** The call's stream id (chosen by the client, sent in start). */
    this.streamId = streamId;
    /** Resolves with {code, reason} once the call's socket has closed. */
    this.closed = closedPromise(link, id);
    this._releaseUnreadOnClose(this.closed);
    link.ended("agent", this.closed);
  }

  /** Sends caller audio in the call's input format (base64 media_input). */
  sendAudio(audio) { return this._send("audio", audio); }

  /** Sends one keypad digit: 0-9, * or #. */
  dtmf(digit) { return this._send("dtmf", String(digit)); }

  /** Sends a custom event with a metadata object. */
  custom(metadata) { return this._send("custom", json(metadata, "metadata")); }

  /** Ends the call (close 1000 "call ended by user"). */
  hangup() {
    try { this._value("closeSocket"); } catch { /* already closed */ }
    return this.closed;
  }
}

/** Injects a same-origin <script> (CSP forbids inline scripts, allows same-origin files). */
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.async = true;
    script.onload = () => resolve();
    script.onerror = () => reject(new VoxgateError(
      { code: "load_failed", message: `could not load ${src}` }));
    document.head.append(script);
  });
}

/** Fetches and compiles the module, streaming when the server labels it application/wasm. */
async function instantiate(url, imports) {
  const resp = await fetch(url, { credentials: "same-origin" });
  if (!resp.ok) {
    throw new VoxgateError({ code: "load_failed", status: resp.status,
      message: `fetch ${url}: HTTP ${resp.status}` });
  }
  const type = (resp.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
  if (type === "application/wasm" && typeof WebAssembly.instantiateStreaming === "function") {
    return WebAssembly.instantiateStreaming(resp, imports);
  }
  // A wrong content type makes instantiateStreaming throw; compiling from bytes does not care.
  return WebAssembly.instantiate(await resp.arrayBuffer(), imports);
}

// disarm cancels the wake-ups the Go runtime had scheduled when its program exited.
// wasm_exec.js leaves them armed, and each one that fires afterwards throws "Go program has
// already exited" into the page. The map is wasm_exec.js's own, copied from the same
// toolchain at every build.
function disarm(go) {
  const pending = go._scheduledTimeouts;
  if (!(pending instanceof Map)) return;
  for (const handle of pending.values()) clearTimeout(handle);
  pending.clear();
}

/** Loads and starts the wasm client. See voxgate.d.ts for the options. */
export async function load(options = {}) {
  const {
    wasmURL = "/voxgate.wasm",
    wasmExecURL = "/wasm_exec.js",
    baseURL = "",
    marginMs,
    proactive = true,
    direct = true,
    tabs: shareTabs = true,
    timeoutMs = 15000,
  } = options;

  if (typeof globalThis.Go !== "function") await loadScript(wasmExecURL);
  if (typeof globalThis.Go !== "function") {
    throw new VoxgateError({ code: "load_failed", message: `${wasmExecURL} did not define Go` });
  }

  let link;
  const client = new Client((l) => { link = l; });
  const go = new globalThis.Go();
  const hookName = `__voxgate_${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
  go.env = { VOXGATE_HOOK: hookName };
  go.argv = ["voxgate"];

  let timer;
  const tabs = crossTab(shareTabs);
  const registered = new Promise((resolve, reject) => {
    globalThis[hookName] = {
      ...tabs.hook,
      options: { baseURL, proactive, direct, ...(marginMs === undefined ? {} : { marginMs }) },
      onEvent: (type, detail) => link.event(type, detail),
      ready: resolve,
      fail: (message) => reject(new VoxgateError({ code: "load_failed", message })),
    };
    timer = setTimeout(() => reject(new VoxgateError(
      { code: "load_failed", message: `the module did not register within ${timeoutMs} ms` })),
    timeoutMs);
  });

  // Limitation: when the module starts but registers only after timeoutMs, load() has
  // already rejected and the late module keeps running unused until the page unloads.
  try {
    const { instance } = await instantiate(wasmURL, go.importObject);
    const ran = go.run(instance);
    ran.then(() => disarm(go), () => disarm(go));
    const exited = ran.then(() => {
      throw new VoxgateError(
        { code: "load_failed", message: "the module exited before registering" });
    });
    const api = await Promise.race([registered, exited]);
    tabs.subscribe((text) => api.adopt(text));
    const unwatch = watchPage(() => api.check());
    link.attach(api, () => { unwatch(); tabs.close(); });
    return client;
  } catch (e) {
    tabs.close();
    throw toError(e);
  } finally {
    clearTimeout(timer);
    delete globalThis[hookName];
  }
}
