// Type declarations for voxgate.js, the page-side loader of the voxgate wasm client.

/** A grant: one token per grant, each with its own expiry. */
export type Grant = "tts" | "stt" | "agent";

/** The grants the server mints tokens for. */
export declare const GRANTS: readonly Grant[];

/** Options for {@link load}. */
export interface LoadOptions {
  /** URL of the wasm module. Default "/voxgate.wasm". */
  wasmURL?: string;
  /** URL of the Go runtime glue, injected as a same-origin script only when
   * `globalThis.Go` is missing. Default "/wasm_exec.js". */
  wasmExecURL?: string;
  /** Origin of the voxgate server; "" (default) means the page's own origin. Cookies are
   * sent to the same origin only. */
  baseURL?: string;
  /** How long before expiry a token is refreshed, in ms. Default min(30 s, lifetime / 5).
   * A margin not shorter than the token lifetime makes calls fail with code
   * "margin_too_large" instead of refreshing in a loop. */
  marginMs?: number;
  /** Refresh tokens from timers before they expire (default true). Tokens are checked
   * before every call either way. */
  proactive?: boolean;
  /** How long to wait for the module to start, in ms. Default 15000. */
  timeoutMs?: number;
}

/** Fetches, compiles and starts the wasm client. Rejects with a {@link VoxgateError} of
 * code "load_failed" when the module cannot be loaded or does not start in time. */
export declare function load(options?: LoadOptions): Promise<Client>;

/** Who is signed in: the server's answer to POST /api/login and GET /api/session. */
export interface Session {
  /** The user name. */
  user: string;
  /** The grants this user may mint tokens for. */
  grants: Grant[];
  /** When the session ends, as the server reports it (Unix ms on the server's clock). */
  session_expires_at: number;
}

/** What the page needs before sign-in: the server's answer to GET /api/info. */
export interface Info {
  /** "emulator" when no Cartesia key is configured, else "cartesia". */
  upstream: "emulator" | "cartesia";
  /** The grants the server mints. */
  grants: Grant[];
}

/** A snapshot of one grant's token. Times are Unix milliseconds. */
export interface TokenState {
  grant: Grant | string;
  /** A token is known and has not expired. */
  valid: boolean;
  /** Estimated expiry on the local clock (now + remainingMs); null without a token. */
  expiresAt: number | null;
  /** Expiry as the server reported it, on the server's clock; null without a token. */
  serverExpiresAt: number | null;
  /** Remaining lifetime: lifetime minus the larger of wall and monotonic time elapsed
   * since the refresh started, so skewed clocks and sleeping tabs do not fool it. */
  remainingMs: number;
  /** The token's full lifetime. */
  lifetimeMs: number;
  /** How long before expiry the token counts as expiring and is refreshed. */
  marginMs: number;
  /** Successful refreshes of this grant since load, login or logout. */
  refreshes: number;
  /** A refresh is in flight. */
  refreshing: boolean;
  /** When the last successful refresh completed (local clock); null if none. */
  lastRefreshAt: number | null;
  /** Server clock minus local clock, estimated at the last refresh (diagnostics only). */
  clockOffsetMs: number;
  /** The last refresh failure; null after a success. */
  lastError: { code: string; message: string } | null;
}

/** Why a token was refreshed. "missing": first use; "expiring": a call found it inside the
 * margin or expired; "proactive": its timer fired (or a failed proactive refresh was
 * retried); "retry": the server rejected it and the call is retried once; "manual":
 * tokens.refresh(). */
export type RefreshReason = "missing" | "expiring" | "proactive" | "retry" | "manual";

/** The detail of every client event. */
export interface VoxgateEventDetail {
  /** The grant concerned; null for "sessionend". */
  grant: Grant | string | null;
  /** The refresh reason, or for "sessionend" "logout" | "no_session"; else null. */
  reason: RefreshReason | "logout" | "no_session" | null;
  /** The grant's state after the event; null for "sessionend". */
  state: TokenState | null;
  /** The failure, for "refresherror". */
  error: VoxgateError | null;
}

/** Events a {@link Client} dispatches, all as CustomEvent<VoxgateEventDetail>. */
export interface VoxgateEventMap {
  /** A new token arrived. */
  refresh: CustomEvent<VoxgateEventDetail>;
  /** Same as "refresh" (the name the README's example uses). */
  token: CustomEvent<VoxgateEventDetail>;
  /** A refresh failed; detail.error says why. */
  refresherror: CustomEvent<VoxgateEventDetail>;
  /** A token reached expiry minus margin without being replaced (fires for every token). */
  expiring: CustomEvent<VoxgateEventDetail>;
  /** A token expired without being replaced. */
  expired: CustomEvent<VoxgateEventDetail>;
  /** The session ended: logout(), or the server answered 401 no_session. Every token
   * state is reset. */
  sessionend: CustomEvent<VoxgateEventDetail>;
}

/** Cartesia voice selector. */
export type TTSVoice = string | { mode: "id"; id: string } | { id: string };

/** Cartesia PCM encodings. */
export type PCMEncoding = "pcm_f32le" | "pcm_s16le" | "pcm_mulaw" | "pcm_alaw";

/** Sample rates Cartesia accepts. */
export type SampleRate = 8000 | 16000 | 22050 | 24000 | 44100 | 48000;

/** MP3 bit rates Cartesia accepts. */
export type MP3BitRate = 32000 | 64000 | 96000 | 128000 | 192000;

/** Cartesia output formats, told apart by container. */
export type TTSOutputFormat =
  | { container: "raw"; encoding: PCMEncoding; sample_rate: SampleRate }
  | { container: "wav"; encoding: PCMEncoding; sample_rate: SampleRate }
  | { container: "mp3"; sample_rate: SampleRate; bit_rate: MP3BitRate };

/** Cartesia TTS request body (POST /tts/bytes). Unknown fields are passed through. */
export interface TTSRequest {
  /** e.g. "sonic-3", "sonic-3.5", "sonic-latest". */
  model_id: string;
  /** The text to speak. */
  transcript: string;
  voice: TTSVoice;
  output_format: TTSOutputFormat;
  /** Language code such as "en"; do not combine with locale. */
  language?: string;
  /** Locale such as "en-GB" (newer API versions); do not combine with language. */
  locale?: string;
  /** sonic-3 and later only. */
  generation_config?: {
    /** 0.5 to 2.0, default 1.0. */
    volume?: number;
    /** 0.6 to 1.5, default 1.0. */
    speed?: number;
    /** e.g. "neutral", "calm", "angry", "content", "sad", "scared". */
    emotion?: string;
  };
  pronunciation_dict_id?: string;
  /** "auto" (default), "off" or a locale code. */
  normalization?: string;
  /** When true Cartesia stores the audio and answers a Cartesia-File-ID header. */
  save?: boolean;
  [field: string]: unknown;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborting rejects the call with code "aborted" and cancels the request. */
  signal?: AbortSignal;
}

/** The voxgate client: call methods, listen for events. */
export interface Client extends EventTarget {
  /** Signs in and starts a new session (tokens of a previous session are forgotten). */
  login(username: string, password: string): Promise<Session>;
  /** Signs out; every token state is reset and "sessionend" fires. */
  logout(): Promise<void>;
  /** Who is signed in; rejects with code "no_session" when nobody is. */
  session(): Promise<Session>;
  /** What the server offers; needs no session. */
  info(): Promise<Info>;

  readonly tts: {
    /** Synthesizes speech and resolves with the whole audio file. The tts token is checked
     * and refreshed first; a 401 token_expired / no_token refreshes and retries once. */
    bytes(request: TTSRequest, options?: CallOptions): Promise<Uint8Array>;
  };

  readonly tokens: {
    /** The grant's current token state (synchronous). */
    state(grant: Grant | string): TokenState;
    /** Every grant's state: tts, stt, agent, then any other grant used. */
    states(): TokenState[];
    /** Mints a new token for the grant now (joins a refresh already in flight). */
    refresh(grant: Grant | string): Promise<TokenState>;
  };

  /** Whether close() was called. */
  readonly closed: boolean;
  /** Stops the module: timers stop, pending calls reject with code "closed", later calls
   * throw or reject with code "closed". Safe to call more than once. */
  close(): void;

  addEventListener<K extends keyof VoxgateEventMap>(type: K,
    listener: (this: Client, ev: VoxgateEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof VoxgateEventMap>(type: K,
    listener: (this: Client, ev: VoxgateEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions): void;
}

/** What Cartesia said, for errors the server relayed from it. */
export interface UpstreamError {
  status: number;
  error_code?: string;
  title?: string;
  message?: string;
  request_id?: string;
}

/** Error codes: the server's (see the README) and the client's own. */
export type ErrorCode =
  | "no_session" | "invalid_credentials" | "grant_forbidden" | "rate_limited"
  | "token_expired" | "no_token" | "upstream_error" | "upstream_timeout" | "bad_request"
  | "body_too_large" | "csrf_rejected" | "unsupported_media_type" | "host_rejected"
  | "method_not_allowed" | "not_found"
  // client codes
  | "network_error" | "aborted" | "closed" | "bad_response" | "invalid_request"
  | "http_error" | "margin_too_large" | "refresh_failed" | "load_failed" | "internal"
  | (string & {});

/** Every failure of the client rejects with a VoxgateError. */
export declare class VoxgateError extends Error {
  constructor(init: { code: string; status?: number; message?: string; grant?: string | null;
    upstream?: UpstreamError | null; retryAfterMs?: number }, options?: ErrorOptions);
  readonly name: "VoxgateError";
  /** The server's stable code, or a client code such as "network_error". */
  readonly code: ErrorCode;
  /** HTTP status; 0 when there was no answer. */
  readonly status: number;
  /** The grant the failed call needed; null for session calls. */
  readonly grant: Grant | string | null;
  /** Cartesia's error, for errors relayed from upstream. */
  readonly upstream: UpstreamError | null;
  /** The server's Retry-After in ms (rate_limited); 0 when absent. */
  readonly retryAfterMs: number;
}
