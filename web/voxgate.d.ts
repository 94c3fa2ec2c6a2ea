// Type declarations for voxgate.js, the page-side loader of the voxgate wasm client.

/** A grant: one token per grant, each with its own expiry. */
export type Grant = "tts" | "stt" | "agent";

/** The grants the server mints tokens for. */
export declare const GRANTS: readonly Grant[];

/** The BroadcastChannel on which tabs share each new token's metadata, as
 * {grant, expires_in, expires_at, server_time, minted_at_server} (no token). */
export declare const TABS_CHANNEL: "voxgate-tokens";

/** Prefix of the Web Lock (navigator.locks) name per grant, "voxgate-refresh-<grant>":
 * one tab at a time refreshes a grant. */
export declare const LOCK_PREFIX: "voxgate-refresh-";

/** How voxgate reads a WebSocket close: "expired" or "session" for the server's 1008
 * closes about the token ("... expired ...") or the session ("session ended"), else null. */
export declare function streamEndKind(close: CloseInfo): "expired" | "session" | null;

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
  /** Refresh tokens before they expire (default true): from each token's timer, when the
   * page becomes visible, gets focus, comes back online or is restored, and after the
   * computer wakes up; only for grants used within the last token lifetime. Tokens are
   * checked before every call either way. */
  proactive?: boolean;
  /** Share refreshes with the origin's other tabs (default true): one tab refreshes a grant
   * at a time (Web Locks) and the others adopt its token (BroadcastChannel). Without these
   * browser APIs, or with false, each tab refreshes on its own. */
  tabs?: boolean;
  /** Use direct mode where the server offers it (default true). For the grants the server
   * names in `info().direct`, tokens come from POST /api/token/direct, live only in the
   * wasm module's memory (never in JavaScript, Web Storage, a cookie or the DOM, never sent
   * to another tab) and calls go straight to `direct.upstream`: a Bearer header on HTTP,
   * the access_token query parameter on WebSockets. false always uses the server's proxy. */
  direct?: boolean;
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
  /** Present only when the server allows direct mode. */
  direct?: DirectInfo;
}

/** The server's direct-mode offer (see {@link LoadOptions.direct}). */
export interface DirectInfo {
  /** The grants whose tokens may be used directly. */
  grants: Grant[];
  /** The origin direct calls go to: Cartesia, or the built-in emulator. */
  upstream: string;
  /** The Cartesia-Version direct calls send. */
  cartesia_version: string;
  /** The longest direct token, in seconds. */
  max_ttl: number;
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
  /** Tokens of this grant adopted from other tabs since load, login or logout. */
  adopted: number;
  /** How long the backoff window after a failed refresh stays open; 0 when closed. While
   * open, calls without a live token fail at once with the last error (no request). */
  backoffMs: number;
  /** The grant is in direct mode: its calls go straight to the upstream and its token,
   * when there is one, is held in the wasm module's memory (not in the server's cookie).
   * Known from the first `info()` or call on. */
  direct: boolean;
}

/** Why a token was refreshed. "missing": first use; "expiring": a call found it inside the
 * margin or expired; "proactive": its timer fired, a page event or a wake from sleep found
 * it due, or a failed refresh was retried after backoff; "retry": the server rejected it and
 * the call is retried once; "manual": tokens.refresh(); "shared": another tab refreshed
 * and this tab adopted its token (no request from this tab). */
export type RefreshReason = "missing" | "expiring" | "proactive" | "retry" | "manual" |
  "shared";

/** The detail of every client event. */
export interface VoxgateEventDetail {
  /** The grant concerned; null for "sessionend". */
  grant: Grant | string | null;
  /** The refresh reason, for "sessionend" "logout" | "no_session", for "streamend" the
   * server's close reason; else null. */
  reason: RefreshReason | "logout" | "no_session" | string | null;
  /** The grant's state after the event; null for "sessionend" and "streamend". */
  state: TokenState | null;
  /** The failure, for "refresherror". Its code says what failed: "no_session" (signed
   * out; never retried), "grant_forbidden", "rate_limited" (retryAfterMs honoured),
   * "upstream_error" / "upstream_unavailable" / "upstream_timeout" / "network_error"
   * (backoff with jitter), "margin_too_large" (marginMs not shorter than the lifetime). */
  error: VoxgateError | null;
  /** "streamend" only: the close code (1008). */
  code?: number;
  /** "streamend" only: "expired" (the token expired) or "session" (the session ended). */
  kind?: "expired" | "session";
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
  /** The server closed a TTS, STT or agent socket with 1008 because its token expired
   * (kind "expired") or the session ended (kind "session"). A refresh never closes open
   * sockets; TTS and STT sockets offer reconnect(). */
  streamend: CustomEvent<VoxgateEventDetail>;
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
    /** Streams synthesis over POST /tts/sse (raw output_format only). Returns at once; the
     * request goes out on the first iteration (token checked and, on a 401, refreshed and
     * retried once). HTTP errors and SSE error events throw a VoxgateError from the
     * iterator. The body is read only as events are pulled (backpressure). */
    sse(request: TTSStreamRequest, options?: CallOptions): TTSStream;
    /** Opens a TTS WebSocket (see {@link TTSSocket}). Aborting the signal closes it. */
    websocket(options?: CallOptions): Promise<TTSSocket>;
  };

  readonly stt: {
    /** Opens /stt/websocket (manual finalize). Rejects with code "ws_refused" when the
     * socket cannot be opened even after refreshing the stt token. */
    websocket(options: STTOptions, callOptions?: CallOptions): Promise<STTSocket>;
    /** Opens /stt/turns/websocket (turn detection, ink-2). */
    turns(options: TurnsOptions, callOptions?: CallOptions): Promise<TurnsSocket>;
    /** Batch transcription, POST /stt. The body is a browser FormData (multipart built by
     * the browser, a Blob streamed without a copy through the wasm module). */
    transcribe(file: Blob | Uint8Array | ArrayBuffer, options: TranscribeOptions,
      callOptions?: CallOptions): Promise<Transcription>;
    /** The same through the OpenAI-compatible POST /audio/transcriptions. */
    openai(file: Blob | Uint8Array | ArrayBuffer, options: OpenAITranscribeOptions,
      callOptions?: CallOptions): Promise<Transcription>;
  };

  readonly agent: {
    /** Calls an agent (ids: 1 to 128 of A-Z a-z 0-9 _ -): opens the socket after checking
     * the agent token and sends the start event. */
    call(agentId: string, options: AgentCallOptions, callOptions?: CallOptions):
      Promise<AgentCall>;
  };

  readonly tokens: {
    /** The grant's current token state (synchronous). */
    state(grant: Grant | string): TokenState;
    /** Every grant's state: tts, stt, agent, then any other grant used. */
    states(): TokenState[];
    /** Mints a new token for the grant now (joins a refresh already in flight). */
    refresh(grant: Grant | string): Promise<TokenState>;
  };

  /** Test hook: open stream handles in the module and live Go functions it made. Both
   * return to their earlier values once every stream has ended. */
  _stats(): { handles: number; funcs: number };

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
  | "method_not_allowed" | "not_found" | "direct_not_allowed" | "upstream_unavailable"
  | "request_timeout" | "unavailable"
  // client codes
  | "network_error" | "aborted" | "closed" | "bad_response" | "invalid_request"
  | "http_error" | "margin_too_large" | "refresh_failed" | "load_failed" | "internal"
  | "ws_refused" | "ws_closed" | "bad_event" | "token_echo_withheld"
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
  /** The server's Retry-After in ms (rate_limited), or for a call refused inside a backoff
   * window the time until the next refresh may be tried; 0 when absent. */
  readonly retryAfterMs: number;
}

/** A raw output format: what /tts/sse and /tts/websocket accept. */
export type RawOutputFormat = { container: "raw"; encoding: PCMEncoding; sample_rate: SampleRate };

/** Body of POST /tts/sse. */
export interface TTSStreamRequest extends Omit<TTSRequest, "output_format" | "save"> {
  output_format: RawOutputFormat;
  /** Word timestamps as "timestamps" events. */
  add_timestamps?: boolean;
  add_phoneme_timestamps?: boolean;
  use_normalized_timestamps?: boolean;
  /** Echoed back on every event. */
  context_id?: string;
}

/** The fields every input of a TTS WebSocket context repeats (transcript, continue, flush
 * and context_id are set by the context's methods). */
export interface TTSContextRequest {
  model_id: string;
  voice: TTSVoice;
  output_format: RawOutputFormat;
  language?: string;
  locale?: string;
  add_timestamps?: boolean;
  add_phoneme_timestamps?: boolean;
  use_normalized_timestamps?: boolean;
  /** ms Cartesia may wait to gather text before speaking (0-5000). */
  max_buffer_delay_ms?: number;
  generation_config?: TTSRequest["generation_config"];
  pronunciation_dict_id?: string;
  [field: string]: unknown;
}

/** A piece of audio (raw, in the requested encoding). */
export interface TTSChunkEvent {
  type: "chunk";
  audio: Uint8Array;
  /** Generation time in ms, when Cartesia sent it. */
  stepTime?: number;
  contextId?: string;
  flushId?: number;
}

/** Word timestamps in seconds from the start of the audio. */
export interface TTSTimestampsEvent {
  type: "timestamps";
  words: string[];
  start: number[];
  end: number[];
  contextId?: string;
}

/** All audio up to a flush was sent (WebSocket contexts only). */
export interface TTSFlushDoneEvent { type: "flush_done"; flushId: number; contextId?: string }

/** The last event of a stream or context. */
export interface TTSDoneEvent { type: "done"; contextId?: string }

/** An event type this client does not know yet; data is the JSON as received. */
export interface UnknownEvent { type: string; data: unknown }

export type TTSStreamEvent = TTSChunkEvent | TTSTimestampsEvent | TTSDoneEvent;
export type TTSContextEvent = TTSChunkEvent | TTSTimestampsEvent | TTSFlushDoneEvent |
  TTSDoneEvent;

/** The events of one POST /tts/sse, pulled one at a time. Breaking out of a for await
 * loop, or cancel(), aborts the request. */
export interface TTSStream extends AsyncIterable<TTSStreamEvent> {
  cancel(): void;
}

/** How a WebSocket closed: the server's code and reason (or the client's, when it closed
 * first). 1006: the connection was lost; 1008 "session ended": the user signed out. */
export interface CloseInfo { code: number; reason: string }

/** One /tts/websocket connection with any number of contexts. Events are buffered in the
 * module up to a bound per context; a context nobody reads holds back the socket.
 * Limitation: browsers cannot pause a WebSocket, so they keep receiving regardless. */
export interface TTSSocket {
  /** Starts a context; an id is generated when omitted; an id already open is refused. */
  context(request: TTSContextRequest, id?: string): TTSContext;
  /** Closes with 1000; open contexts end without error. */
  close(): void;
  /** Closes this socket (if open) and opens a new one after checking (and when needed
   * refreshing) the tts token. Contexts do not move: start them on the new socket. */
  reconnect(options?: { signal?: AbortSignal }): Promise<TTSSocket>;
  readonly closed: Promise<CloseInfo>;
}

/** One context: push text in, iterate its events out. Iteration ends after "done"; an
 * error event throws a VoxgateError (code "upstream_error", upstream filled in); a socket
 * that closes before "done" throws code "ws_closed". */
export interface TTSContext extends AsyncIterable<TTSContextEvent> {
  /** The context_id sent to Cartesia. */
  readonly id: string;
  /** Sends text with continue:true (and flush:true when asked). Resolves when queued. */
  push(text: string, options?: { flush?: boolean }): Promise<void>;
  /** Sends the last text (may be empty) with continue:false. */
  end(text?: string): Promise<void>;
  /** Sends {context_id, cancel:true} and ends this context's iteration at once (Cartesia
   * finishes a generation already under way; its events are dropped). */
  cancel(): Promise<void>;
}

/** STT audio encodings. */
export type STTEncoding = "pcm_s16le" | "pcm_s32le" | "pcm_f16le" | "pcm_f32le" | "pcm_mulaw"
  | "pcm_alaw";

/** Query parameters of /stt/websocket. */
export interface STTOptions {
  /** e.g. "ink-whisper", "ink-2". */
  model: string;
  encoding: STTEncoding;
  sample_rate: number;
  /** ISO-639-1, default "en". */
  language?: string;
  /** 0 to 1: silence threshold. */
  min_volume?: number;
  max_silence_duration_secs?: number;
  /** At most 100. */
  keyterm?: string[];
}

/** Query parameters of /stt/turns/websocket. */
export interface TurnsOptions {
  model: string;
  encoding: STTEncoding;
  sample_rate: number;
  keyterm?: string[];
  /** 0.5-0.9, default 0.8. */
  turn_start_threshold?: number;
  /** 0.3-0.6, default 0.4. */
  turn_eager_end_threshold?: number;
  /** 0.05-0.5, default 0.2. */
  turn_end_threshold?: number;
  /** 640-11200, default 5600. */
  turn_end_timeout_ms?: number;
}

/** A word with its times in seconds. */
export interface Word { word: string; start: number; end: number }

/** A transcript: interim (isFinal false) or final. Final transcripts are deltas since the
 * previous final one. */
export interface TranscriptEvent {
  type: "transcript";
  text: string;
  isFinal: boolean;
  duration?: number;
  language?: string;
  words?: Word[];
  requestId?: string;
}

export type STTEvent = TranscriptEvent | { type: "flush_done"; requestId?: string } |
  { type: "done"; requestId?: string };

/** Shared by both STT sockets. Iteration ends when the socket closes with 1000; an error
 * event throws a VoxgateError of code "upstream_error"; another close code throws
 * "ws_closed". Breaking out of the loop closes the socket. Start iterating before the
 * socket closes: a socket never iterated drops its unread events when it closes. */
interface STTSocketBase<E> extends AsyncIterable<E> {
  /** Sends one binary audio frame (declared encoding and rate); resolves when queued. */
  send(audio: Uint8Array | ArrayBuffer): Promise<void>;
  /** Ends the stream gracefully: sends close, waits (at most 10 s) for the server to finish,
   * then closes the socket. Events up to "done" stay readable. */
  close(): Promise<void>;
  /** Aborts this socket (if open) and opens a new one with the same options after checking
   * (and when needed refreshing) the stt token. Audio not yet transcribed is lost. */
  reconnect(options?: { signal?: AbortSignal }): Promise<this>;
  readonly closed: Promise<CloseInfo>;
}

/** /stt/websocket. */
export interface STTSocket extends STTSocketBase<STTEvent> {
  /** Asks for the final transcript so far; the server answers flush_done. */
  finalize(): Promise<void>;
}

/** Turn thresholds for configure(). */
export interface TurnConfig {
  start_threshold?: number;
  eager_end_threshold?: number;
  end_threshold?: number;
  end_timeout_ms?: number;
}

export type TurnEvent =
  | { type: "connected"; requestId?: string }
  | { type: "turn.start" | "turn.update" | "turn.eager_end" | "turn.resume" | "turn.end";
    transcript?: string; requestId?: string };

/** /stt/turns/websocket. */
export interface TurnsSocket extends STTSocketBase<TurnEvent> {
  /** Sends {"type":"config","turn":...}. */
  configure(turn: TurnConfig): Promise<void>;
}

/** Options of a batch transcription (POST /stt). */
export interface TranscribeOptions {
  /** e.g. "ink-whisper". */
  model: string;
  language?: string;
  /** Word timestamps (timestamp_granularities[]=word). */
  timestamps?: boolean;
  /** For headerless audio: its encoding and sample rate (query parameters). */
  encoding?: STTEncoding;
  sample_rate?: number;
  /** File name sent in the form; default the File's name, else "audio". */
  filename?: string;
}

/** Options of POST /audio/transcriptions (no encoding or sample_rate there). */
export type OpenAITranscribeOptions = Omit<TranscribeOptions, "encoding" | "sample_rate">;

/** A batch transcription's answer (Cartesia's JSON, with any other field it sends). */
export interface Transcription {
  text: string;
  language?: string;
  duration?: number;
  words?: Word[];
  request_id?: string;
  [field: string]: unknown;
}

/** Options of an agent call's start event. */
export interface AgentCallOptions {
  inputFormat: "pcm_16000" | "pcm_24000" | "pcm_44100" | "mulaw_8000";
  /** Overrides the agent's TTS voice. */
  voiceId?: string;
  /** Free-form; "to" and "from" have meanings for Cartesia. */
  metadata?: Record<string, unknown>;
  /** Per-call override of the agent's prompt and greeting. */
  agent?: { system_prompt?: string; introduction?: string };
}

export type AgentEvent =
  | { type: "ack"; streamId: string; config: Record<string, unknown> }
  /** Agent audio in the input format (PCM 16-bit LE mono, or µ-law). */
  | { type: "media"; audio: Uint8Array }
  /** Barge-in: stop and flush local playback. */
  | { type: "clear" }
  | { type: "dtmf"; digit: string }
  | { type: "custom"; metadata: Record<string, unknown> }
  | { type: "transfer_call"; data: unknown }
  | UnknownEvent;

/** One call to an agent. Iteration ends when the call closes with 1000 (for example
 * "connection idle timeout", "call ended by agent"); breaking out of the loop hangs up.
 * Start iterating before the call ends: unread events of a call never iterated are
 * dropped when it closes. */
export interface AgentCall extends AsyncIterable<AgentEvent> {
  /** The stream id sent in start. */
  readonly streamId: string;
  /** Sends caller audio in the input format (base64 media_input); resolves when queued. */
  sendAudio(audio: Uint8Array | ArrayBuffer): Promise<void>;
  /** Sends one keypad digit: 0-9, * or #. */
  dtmf(digit: string): Promise<void>;
  /** Sends a custom event. */
  custom(metadata: Record<string, unknown>): Promise<void>;
  /** Closes with 1000 "call ended by user"; resolves like closed. */
  hangup(): Promise<CloseInfo>;
  readonly closed: Promise<CloseInfo>;
}
