// driver.js is evaluated by scripts/soak in a signed-in demo page. It drives the page's
// voxgate client (voxgateDemo.client) with many concurrent calls of every kind, at random
// intervals, and keeps the counts the soak reports: calls and failures per kind, failure
// codes, and every token event the client dispatched.
//
// It touches nothing but the client's public API and its own globalThis.voxgateSoak. Every
// request goes to the page's own origin (the client's default baseURL), or, for the grants
// the server offers in direct mode, to the upstream it names (the soak checks it is the
// built-in emulator on loopback).
(() => {
  "use strict";

  if (globalThis.voxgateSoak) return; // evaluated twice: keep the first run's counts

  // CALL_TIMEOUT_MS bounds one call, so a hung call is counted (code "soak_timeout") and
  // the soak still ends in time. A call normally takes well under a second on loopback.
  const CALL_TIMEOUT_MS = 20000;

  // CHUNK_BYTES is how much audio one send carries: 100 ms of 16 kHz 16-bit mono.
  const CHUNK_BYTES = 3200;

  // The server caps each user's in-flight calls per grant (8 HTTP calls, 4 WebSockets by
  // default) and both tabs are one user. A socket the page has closed is still counted
  // there until the relay notices, so each tab stays below half of each cap; a worker
  // waits for a free slot instead of provoking a 429 the soak is not about. Direct calls
  // pass no such cap, but keep the same slots so that both soaks make the same load.
  const SLOTS = { "http:tts": 3, "ws:tts": 1, "http:stt": 3, "ws:stt": 1, "ws:agent": 1 };

  const RAW16 = { container: "raw", encoding: "pcm_s16le", sample_rate: 16000 };
  const VOICE = { mode: "id", id: "6ccbfb76-1fc6-48f7-b71d-91ac6298247b" };
  const MODEL = "sonic-3";

  const soak = {
    running: false,
    startedAt: 0, // performance.now() at start
    stopAt: 0,
    inflight: 0,
    maxInflight: 0,
    kinds: {}, // kind -> {calls, ok, failed, codes: {code: n}, totalMs, maxMs}
    events: {}, // event type -> grant -> n
    refreshes: {}, // grant -> reason -> n
    refreshErrors: {}, // grant -> code -> n
    samples: [], // the first failures, for the report: {kind, code, message}
    workers: 0,
    workersDone: 0,
  };
  globalThis.voxgateSoak = soak;

  const client = () => globalThis.voxgateDemo.client;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const pick = (list) => list[Math.floor(Math.random() * list.length)];

  // SoakError is a check of the soak failing (wrong audio length, wrong transcript),
  // shaped like a VoxgateError so that it is counted by code the same way.
  class SoakError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  // A counting semaphore for one slot kind of this tab.
  function semaphore(size) {
    let free = size;
    const waiting = [];
    return {
      async acquire() {
        if (free > 0) {
          free--;
          return;
        }
        await new Promise((resolve) => waiting.push(resolve));
      },
      release() {
        const next = waiting.shift();
        if (next) next();
        else free++;
      },
    };
  }
  const slots = Object.fromEntries(Object.entries(SLOTS).map(([k, n]) => [k, semaphore(n)]));

  function fromBase64(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  let clips = [];

  // chunks yields 100 ms pieces of audio.
  function* chunks(audio) {
    for (let i = 0; i < audio.length; i += CHUNK_BYTES) yield audio.subarray(i, i + CHUNK_BYTES);
  }

  function expectBytes(what, got, want) {
    if (got !== want) throw new SoakError("bad_audio", `${what}: ${got} bytes, want ${want}`);
  }

  function expectText(what, got, want) {
    if (got !== want) {
      throw new SoakError("wrong_transcript", `${what}: heard ${JSON.stringify(got)}, ` +
        `want ${JSON.stringify(want)}`);
    }
  }

  // Every kind of call: its name, the slot it holds, and the call itself. Each checks what
  // came back against the clip, so a call that "succeeds" with wrong data is a failure.
  const KINDS = [
    {
      name: "tts.bytes", slot: "http:tts",
      async run(clip, signal) {
        const audio = await client().tts.bytes({ model_id: MODEL, transcript: clip.text,
          voice: VOICE, output_format: RAW16, language: "en" }, { signal });
        expectBytes("tts.bytes", audio.length, clip.speechBytes);
      },
    },
    {
      name: "tts.sse", slot: "http:tts",
      async run(clip, signal) {
        let bytes = 0;
        let done = false;
        const stream = client().tts.sse({ model_id: MODEL, transcript: clip.text,
          voice: VOICE, output_format: RAW16, language: "en" }, { signal });
        for await (const event of stream) {
          if (event.type === "chunk") bytes += event.audio.length;
          if (event.type === "done") {
            done = true;
            break;
          }
        }
        if (!done) throw new SoakError("no_done", "tts.sse ended without done");
        expectBytes("tts.sse", bytes, clip.speechBytes);
      },
    },
    {
      // Two contexts at once on one socket, each fed in two pieces.
      name: "tts.websocket", slot: "ws:tts",
      async run(clip, signal) {
        const socket = await client().tts.websocket({ signal });
        try {
          const speak = async (text) => {
            const ctx = socket.context({ model_id: MODEL, voice: VOICE, output_format: RAW16,
              language: "en" });
            const cut = text.indexOf(" ") + 1;
            await ctx.push(text.slice(0, cut));
            await ctx.end(text.slice(cut));
            let bytes = 0;
            for await (const event of ctx) {
              if (event.type === "chunk") bytes += event.audio.length;
            }
            if (bytes === 0) throw new SoakError("bad_audio", "tts.websocket: no audio");
          };
          await Promise.all([speak(clip.text), speak(pick(clips).text)]);
        } finally {
          socket.close();
        }
      },
    },
    {
      name: "stt.websocket", slot: "ws:stt",
      async run(clip, signal) {
        const socket = await client().stt.websocket({ model: "ink-whisper",
          encoding: "pcm_s16le", sample_rate: 16000, language: "en" }, { signal });
        const finals = [];
        const reading = (async () => {
          for await (const event of socket) {
            if (event.type === "transcript" && event.isFinal && event.text) finals.push(event.text);
            if (event.type === "done") break;
          }
        })();
        try {
          for (const chunk of chunks(clip.audio)) await socket.send(chunk);
          await socket.finalize();
          await socket.close();
        } finally {
          await reading;
        }
        expectText("stt.websocket", finals.join(" ").trim(), clip.text);
      },
    },
    {
      name: "stt.turns", slot: "ws:stt",
      async run(clip, signal) {
        const socket = await client().stt.turns({ model: "ink-2", encoding: "pcm_s16le",
          sample_rate: 16000 }, { signal });
        const ended = [];
        const reading = (async () => {
          for await (const event of socket) {
            if (event.type === "turn.end" && event.transcript) ended.push(event.transcript);
          }
        })();
        try {
          for (const chunk of chunks(clip.audio)) await socket.send(chunk);
          await socket.close();
        } finally {
          await reading;
        }
        expectText("stt.turns", ended.join(" ").trim(), clip.text);
      },
    },
    {
      name: "stt.transcribe", slot: "http:stt",
      async run(clip, signal) {
        const result = await client().stt.transcribe(clip.wav, { model: "ink-whisper",
          language: "en" }, { signal });
        expectText("stt.transcribe", (result.text || "").trim(), clip.text);
      },
    },
    {
      name: "stt.openai", slot: "http:stt",
      async run(clip, signal) {
        const result = await client().stt.openai(clip.wav, { model: "ink-whisper",
          language: "en" }, { signal });
        expectText("stt.openai", (result.text || "").trim(), clip.text);
      },
    },
    {
      // Says the clip to the agent, waits for its whole spoken answer ("You said: ..."),
      // checks a keypad echo, and hangs up.
      name: "agent.call", slot: "ws:agent",
      async run(clip, signal) {
        const call = await client().agent.call("voxgate-soak", { inputFormat: "pcm_16000",
          metadata: { from: "voxgate-soak" } }, { signal });
        let replyBytes = 0;
        let dialled = false;
        let echoed = false;
        let finished;
        const finishedPromise = new Promise((resolve) => { finished = resolve; });
        const reading = (async () => {
          for await (const event of call) {
            if (event.type === "ack") {
              (async () => {
                for (const chunk of chunks(clip.audio)) await call.sendAudio(chunk);
              })().catch(() => {}); // a failed send shows as a missing reply below
            } else if (event.type === "media") {
              replyBytes += event.audio.length;
              if (!dialled && replyBytes >= clip.replyBytes) {
                dialled = true;
                await call.dtmf("5");
              }
            } else if (event.type === "dtmf") {
              echoed = event.digit === "5";
              finished();
            }
          }
          finished();
        })();
        try {
          await finishedPromise;
        } finally {
          await call.hangup();
          await reading;
        }
        expectBytes("agent reply", replyBytes, clip.replyBytes);
        if (!echoed) throw new SoakError("no_echo", "the agent did not echo the keypad digit");
      },
    },
  ];

  function codeOf(err) {
    if (err && typeof err.code === "string" && err.code !== "") return err.code;
    return "exception:" + (err && err.name ? err.name : typeof err);
  }

  function count(map, key) {
    map[key] = (map[key] || 0) + 1;
  }

  // runCall runs one call with its timeout, aborting it when the time is up.
  async function runCall(kind) {
    const stats = (soak.kinds[kind.name] ??= { calls: 0, ok: 0, failed: 0, codes: {},
      totalMs: 0, maxMs: 0 });
    const clip = pick(clips);
    const abort = new AbortController();
    let timer = 0;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        abort.abort();
        reject(new SoakError("soak_timeout", `${kind.name} took over ${CALL_TIMEOUT_MS} ms`));
      }, CALL_TIMEOUT_MS);
    });

    stats.calls++;
    soak.inflight++;
    soak.maxInflight = Math.max(soak.maxInflight, soak.inflight);
    const started = performance.now();
    try {
      await Promise.race([kind.run(clip, abort.signal), timeout]);
      stats.ok++;
    } catch (err) {
      stats.failed++;
      const code = codeOf(err);
      count(stats.codes, code);
      if (soak.samples.length < 20) {
        soak.samples.push({ kind: kind.name, code, message: String(err && err.message || err) });
      }
    } finally {
      clearTimeout(timer);
      soak.inflight--;
      const ms = performance.now() - started;
      stats.totalMs += ms;
      stats.maxMs = Math.max(stats.maxMs, ms);
    }
  }

  async function worker(gapMs) {
    try {
      while (performance.now() < soak.stopAt) {
        await sleep(Math.random() * 2 * gapMs);
        if (performance.now() >= soak.stopAt) break;
        const kind = pick(KINDS);
        const slot = slots[kind.slot];
        await slot.acquire();
        try {
          if (performance.now() < soak.stopAt) await runCall(kind);
        } finally {
          slot.release();
        }
      }
    } finally {
      soak.workersDone++;
    }
  }

  function listen() {
    const types = ["refresh", "refresherror", "expiring", "expired", "sessionend", "streamend"];
    for (const type of types) {
      client().addEventListener(type, (event) => {
        const detail = event.detail || {};
        const grant = detail.grant || "-";
        count((soak.events[type] ??= {}), grant);
        if (type === "refresh") count((soak.refreshes[grant] ??= {}), detail.reason || "-");
        if (type === "refresherror") {
          const code = (detail.error && detail.error.code) || "-";
          count((soak.refreshErrors[grant] ??= {}), code);
        }
      });
    }
  }

  // start begins the soak: workers calls at once, each waiting a random 0..2*gapMs
  // between calls, until durationMs has passed. clips: [{text, audio (base64 16 kHz s16le
  // mono), wav (base64), speechBytes, replyBytes}].
  soak.start = (config) => {
    if (soak.running) return false;
    clips = config.clips.map((c) => ({
      text: c.text,
      audio: fromBase64(c.audio),
      wav: new Blob([fromBase64(c.wav)], { type: "audio/wav" }),
      speechBytes: c.speechBytes,
      replyBytes: c.replyBytes,
    }));
    listen();
    soak.running = true;
    soak.startedAt = performance.now();
    soak.stopAt = soak.startedAt + config.durationMs;
    soak.workers = config.workers;
    for (let i = 0; i < config.workers; i++) worker(config.gapMs);
    return true;
  };

  // snapshot returns everything counted so far, plus the client's token states.
  soak.snapshot = () => ({
    elapsedMs: soak.running ? performance.now() - soak.startedAt : 0,
    inflight: soak.inflight,
    maxInflight: soak.maxInflight,
    done: soak.running && soak.workersDone === soak.workers && soak.inflight === 0,
    kinds: soak.kinds,
    events: soak.events,
    refreshes: soak.refreshes,
    refreshErrors: soak.refreshErrors,
    samples: soak.samples,
    tokens: client().tokens.states().map((s) => ({ grant: s.grant, lifetimeMs: s.lifetimeMs,
      marginMs: s.marginMs, refreshes: s.refreshes, valid: s.valid, direct: !!s.direct })),
    visibility: document.visibilityState,
  });
})();
