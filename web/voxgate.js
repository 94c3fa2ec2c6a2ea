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

/** The client returned by load(). Events: refresh, refresherror, expiring, expired,
 * sessionend, and token (an alias of refresh). */
class Client extends EventTarget {
  #api = null;
  #closed = false;

  /** @param {(link: {attach(api: object): void, event(type: string, detail: object): void})
   *  => void} connect receives the two functions load() needs; nothing else can reach them. */
  constructor(connect) {
    super();
    connect({
      attach: (api) => { this.#api = api; },
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
    });

    /** Token states per grant, and explicit refresh. */
    this.tokens = Object.freeze({
      state: (grant) => this.#sync("tokenState", String(grant)),
      states: () => this.#sync("tokenStates"),
      refresh: (grant) => this.#call("refresh", String(grant)),
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

  /** Whether close() was called. */
  get closed() {
    return this.#closed;
  }

  /** Stops the module: pending calls reject with code "closed", timers stop, the wasm
   * program exits. Safe to call more than once. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#api?.close();
    this.#api = null;
  }

  #dispatch(type, detail) {
    const d = {
      grant: detail?.grant ?? null,
      reason: detail?.reason ?? null,
      state: detail?.state ?? null,
      error: detail?.error ? toError(detail.error) : null,
    };
    this.dispatchEvent(new CustomEvent(type, { detail: d }));
    if (type === "refresh") this.dispatchEvent(new CustomEvent("token", { detail: d }));
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

/** Loads and starts the wasm client. See voxgate.d.ts for the options. */
export async function load(options = {}) {
  const {
    wasmURL = "/voxgate.wasm",
    wasmExecURL = "/wasm_exec.js",
    baseURL = "",
    marginMs,
    proactive = true,
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
  const registered = new Promise((resolve, reject) => {
    globalThis[hookName] = {
      options: { baseURL, proactive, ...(marginMs === undefined ? {} : { marginMs }) },
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
    const exited = go.run(instance).then(() => {
      throw new VoxgateError(
        { code: "load_failed", message: "the module exited before registering" });
    });
    const api = await Promise.race([registered, exited]);
    link.attach(api);
    return client;
  } catch (e) {
    throw toError(e);
  } finally {
    clearTimeout(timer);
    delete globalThis[hookName];
  }
}
