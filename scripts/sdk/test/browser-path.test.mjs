// The SDK's browser code path: loaded as an ES module without the `ws` package it falls
// back to the global WebSocket (Node's, enabled by --experimental-websocket, which the Go
// harness passes) and, like in a browser, puts the credential and the version in the query:
// access_token or api_key, cartesia_version and cartesia_client (reference §8.1). This is
// how a page talking to Cartesia directly would reach the emulator.
import assert from 'node:assert/strict';
import { describe, test, before } from 'node:test';
import { createRequire } from 'node:module';
import { Cartesia } from '@cartesia/cartesia-js';

const require = createRequire(import.meta.url);
const { BYTES_PER_SAMPLE, EMULATOR_URL, STREAM_TIMEOUT_MS, VOICE, chunks, collect, fixture, keyClient, record } =
  require('./lib.js');

describe('browser path: credentials and version in the WebSocket query', () => {
  let token;
  before(async () => {
    assert.equal(typeof WebSocket, 'function', 'run with --experimental-websocket (Node 20)');
    ({ token } = await keyClient().accessToken.create({ grants: { tts: true, stt: true }, expires_in: 600 }));
  });

  test('tts.websocket with access_token in the query speaks a context to done', async () => {
    const client = new Cartesia({ token, baseURL: EMULATOR_URL, maxRetries: 0 });
    const ws = await client.tts.websocket();
    assert.ok(ws.socket instanceof WebSocket, 'the native WebSocket, as in a browser');
    const url = new URL(ws.socket.url);
    assert.equal(url.searchParams.get('access_token'), token);
    assert.equal(url.searchParams.get('cartesia_version'), '2026-08-14');
    assert.match(url.searchParams.get('cartesia_client'), /^cartesia-js\//);

    const errors = [];
    ws.on('error', (e) => errors.push(e));
    const ctx = ws.context({
      contextId: 'browser-ctx',
      model_id: 'sonic-3',
      voice: VOICE,
      output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 },
      timeout: STREAM_TIMEOUT_MS,
    });
    await ctx.push({ transcript: 'From a browser.' });
    await ctx.no_more_inputs();
    const events = await collect(ctx.receive());
    assert.equal(events.at(-1)?.type, 'done', JSON.stringify(events.map((e) => e.type)));
    assert.ok(events.some((e) => e.type === 'chunk'));
    assert.deepEqual(errors, []);
    ws.close();
  });

  for (const [name, options] of [
    ['access_token', () => ({ token })],
    ['api_key', () => ({ apiKey: process.env.VOXGATE_EMULATOR_KEY })],
  ]) {
    test(`stt.manualFinalize.websocket with ${name} in the query transcribes`, async () => {
      const client = new Cartesia({ ...options(), baseURL: EMULATOR_URL, maxRetries: 0 });
      const f = fixture('speech_s16_16k');
      const stt = client.stt.manualFinalize.websocket({
        model: 'ink-whisper',
        encoding: f.encoding,
        sample_rate: f.sample_rate,
      });
      assert.ok(new URL(stt.url).protocol === 'wss:');
      const rec = record(stt);
      for (const piece of chunks(f.bytes, f.sample_rate, BYTES_PER_SAMPLE[f.encoding])) stt.sendRaw(piece);
      stt.send('finalize');
      await rec.until((e) => e.type === 'message' && e.message.type === 'flush_done', 'flush_done');
      stt.send('close');
      await rec.closed();
      assert.deepEqual(rec.errors(), []);
      const finals = rec.messages().filter((m) => m.type === 'transcript' && m.is_final);
      assert.equal(finals.map((m) => m.text).join(''), f.text);
    });
  }
});
