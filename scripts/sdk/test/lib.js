// Shared helpers for the SDK witness tests: the environment sdk_test.go prepares, the three
// ways of reaching Cartesia (emulator + API key, emulator + minted token, voxgate's proxy
// with cookies), and small utilities to record streams and save audio for the Go side to
// decode with the tone code.
//
// These files run only under sdk_test.go, which starts every server on 127.0.0.1 over TLS
// and points NODE_EXTRA_CA_CERTS at its test CA. Nothing here reaches any other host.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Cartesia } = require('@cartesia/cartesia-js');

/** env returns a required variable; the Go harness always sets them all. */
function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through go test ./scripts/sdk/`);
  return v;
}

const EMULATOR_URL = env('VOXGATE_EMULATOR_URL'); // https://127.0.0.1:port
const SERVER_URL = env('VOXGATE_SERVER_URL'); // https://127.0.0.1:port
const OUT_DIR = env('VOXGATE_OUT');

/** The fixtures Go generated: tone-coded speech of known text, by name. */
const FIXTURES = JSON.parse(fs.readFileSync(path.join(env('VOXGATE_FIXTURES'), 'fixtures.json')));

/** fixture returns {text, encoding, sample_rate, container, bytes} for a fixture name. */
function fixture(name) {
  const f = FIXTURES[name];
  assert.ok(f, `no fixture ${name}`);
  return { ...f, bytes: fs.readFileSync(path.join(env('VOXGATE_FIXTURES'), f.file)) };
}

const VOICE = '6ccbfb76-1fc6-48f7-b71d-91ac6298247b';

/** Every REST call fails fast and visibly: no retries hide a wrong status. */
const CLIENT_DEFAULTS = { maxRetries: 0, timeout: 20_000 };

/** How long one stream may take; the emulator runs unpaced, so this is only a hang guard. */
const STREAM_TIMEOUT_MS = 15_000;

/** keyClient talks to the emulator with its API key. */
function keyClient() {
  return new Cartesia({ ...CLIENT_DEFAULTS, apiKey: env('VOXGATE_EMULATOR_KEY'), baseURL: EMULATOR_URL });
}

/** tokenClient mints an access token with the key client and talks with that token only. */
async function tokenClient(grants = { tts: true, stt: true }) {
  const { token } = await keyClient().accessToken.create({ grants, expires_in: 600 });
  return new Cartesia({ ...CLIENT_DEFAULTS, token, baseURL: EMULATOR_URL });
}

/**
 * signIn logs the demo user into bin/server like the page does (same-origin fetch with
 * X-CSRF) and mints the given grants' token cookies. It returns the Cookie header value.
 */
async function signIn(grants = ['tts', 'stt']) {
  const jar = new Map();
  const post = async (p, body) => {
    const res = await fetch(SERVER_URL + p, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'X-CSRF': '1',
        Origin: SERVER_URL,
        Cookie: cookieHeader(jar),
      },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    assert.equal(res.status, 200, `POST ${p}: ${res.status} ${text}`);
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return JSON.parse(text);
  };
  await post('/api/login', { username: env('VOXGATE_USER'), password: env('VOXGATE_PASSWORD') });
  for (const grant of grants) await post('/api/token', { grant });
  return cookieHeader(jar);
}

function cookieHeader(jar) {
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}

/**
 * proxyClient points the SDK at voxgate's /cartesia proxy: the cookies carry the session
 * and the grant tokens, and Authorization: null tells the SDK (reference §8.1) that no
 * credential of its own is needed. WebSockets get the cookies and the page's Origin.
 */
function proxyClient(cookie) {
  const client = new Cartesia({
    ...CLIENT_DEFAULTS,
    baseURL: SERVER_URL + '/cartesia',
    defaultHeaders: { Cookie: cookie, 'X-CSRF': '1', Origin: SERVER_URL, Authorization: null },
  });
  return { client, wsOptions: { headers: { Cookie: cookie, Origin: SERVER_URL } } };
}

/** saveAudio writes audio for sdk_test.go to decode and compare with expect. */
function saveAudio(name, bytes, format, expect) {
  fs.writeFileSync(path.join(OUT_DIR, `${name}.audio`), bytes);
  const meta = {
    file: `${name}.audio`,
    container: format.container,
    encoding: format.encoding ?? '',
    sample_rate: format.sample_rate ?? 0,
    expect,
  };
  fs.writeFileSync(path.join(OUT_DIR, `${name}.json`), JSON.stringify(meta));
}

/** chunks splits audio into ~100 ms pieces, as a live microphone would send it. */
function* chunks(bytes, sampleRate, bytesPerSample) {
  const size = Math.round(sampleRate / 10) * bytesPerSample;
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

const BYTES_PER_SAMPLE = { pcm_s16le: 2, pcm_f32le: 4, pcm_s32le: 4, pcm_f16le: 2, pcm_mulaw: 1, pcm_alaw: 1 };

/**
 * record drains an SDK STT socket's async iterator into an array. until(pred) waits for a
 * matching entry; closed resolves with the final {code, reason}.
 */
function record(socket) {
  const entries = [];
  const waiters = [];
  let resolveClosed;
  const closed = new Promise((r) => (resolveClosed = r));
  (async () => {
    for await (const entry of socket) {
      entries.push(entry);
      for (const w of [...waiters]) {
        if (w.pred(entry)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(entry);
        } else if (entry.type === 'close' || entry.type === 'error') {
          // A close ends the stream and every test here treats an error as a failure:
          // fail now rather than at the timeout.
          waiters.splice(waiters.indexOf(w), 1);
          w.reject(new Error(`closed while waiting for ${w.what}; got ${describe(entries)}`));
        }
      }
      if (entry.type === 'close') resolveClosed({ code: entry.code, reason: entry.reason });
    }
  })();
  const until = (pred, what) =>
    new Promise((resolve, reject) => {
      const hit = entries.find(pred);
      if (hit) return resolve(hit);
      if (entries.some((e) => e.type === 'close' || e.type === 'error')) {
        return reject(new Error(`closed or failed before ${what}; got ${describe(entries)}`));
      }
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}; got ${describe(entries)}`)),
        STREAM_TIMEOUT_MS,
      );
      waiters.push({
        pred,
        what,
        resolve: (e) => (clearTimeout(timer), resolve(e)),
        reject: (err) => (clearTimeout(timer), reject(err)),
      });
    });
  const closedWithin = () => {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no close; got ${describe(entries)}`)), STREAM_TIMEOUT_MS);
    });
    // The timer is cleared either way: a pending one would keep the test process alive.
    return Promise.race([closed, timeout]).finally(() => clearTimeout(timer));
  };
  return {
    entries,
    until,
    closed: closedWithin,
    messages: () => entries.filter((e) => e.type === 'message').map((e) => e.message),
    errors: () => entries.filter((e) => e.type === 'error').map((e) => e.error),
  };
}

/** describe renders recorded entries compactly for failure messages. */
function describe(entries) {
  return JSON.stringify(
    entries.map((e) => (e.type === 'message' ? e.message : e.type === 'error' ? { error: e.error.message } : e)),
  ).slice(0, 2000);
}

/** collect gathers an async iterable into an array. */
async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

/** socketClosed resolves with {code, reason} when a TTSWS's socket closes. */
function socketClosed(ttsws) {
  return new Promise((resolve) => {
    ttsws.socket.addEventListener('close', (ev) => resolve({ code: ev.code, reason: String(ev.reason) }));
  });
}

module.exports = {
  BYTES_PER_SAMPLE,
  EMULATOR_URL,
  SERVER_URL,
  STREAM_TIMEOUT_MS,
  VOICE,
  chunks,
  collect,
  fixture,
  keyClient,
  proxyClient,
  record,
  saveAudio,
  signIn,
  socketClosed,
  tokenClient,
};
