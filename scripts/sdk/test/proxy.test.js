// The SDK against voxgate's /cartesia proxy: cookies carry the session and the grant
// tokens, the SDK holds no credential (Authorization: null), and the server holds the key.
'use strict';

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const { Cartesia } = require('@cartesia/cartesia-js');
const { SERVER_URL, chunks, fixture, proxyClient, record, signIn } = require('./lib');
const { speechSuite } = require('./suite');

speechSuite('proxy', async () => proxyClient(await signIn()));

/** upgradeFailure opens an STT socket with the given headers and returns its error. */
function upgradeFailure(client, headers) {
  const stt = client.stt.manualFinalize.websocket(
    { model: 'ink-whisper', encoding: 'pcm_s16le', sample_rate: 16000 },
    { headers },
  );
  return new Promise((resolve) => stt.on('error', (e) => resolve(e.message)));
}

describe('proxy: what only the proxy does', () => {
  test('access-token creation is not exposed to the page', async () => {
    const { client } = proxyClient(await signIn());
    await assert.rejects(client.accessToken.create({ grants: { tts: true } }), (err) => err.status === 404);
  });

  test('REST without X-CSRF is refused with 403', async () => {
    const cookie = await signIn();
    const client = new Cartesia({
      baseURL: SERVER_URL + '/cartesia',
      maxRetries: 0,
      defaultHeaders: { Cookie: cookie, Authorization: null },
    });
    await assert.rejects(
      client.tts.generate({
        model_id: 'sonic-3',
        voice: 'v',
        transcript: 'x',
        output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 },
      }),
      (err) => err.status === 403 && err.error?.error?.code === 'csrf_rejected',
    );
  });

  test('WebSocket upgrades are checked before any upstream dial', async () => {
    const cookie = await signIn(['tts']);
    const { client } = proxyClient(cookie);
    assert.match(await upgradeFailure(client, { Cookie: cookie }), /403/, 'no Origin');
    assert.match(await upgradeFailure(client, { Cookie: cookie, Origin: 'https://evil.example' }), /403/);
    assert.match(await upgradeFailure(client, { Origin: SERVER_URL }), /401/, 'no session');
    assert.match(await upgradeFailure(client, { Cookie: cookie, Origin: SERVER_URL }), /401/, 'no stt token');
  });

  test('signing out closes the open STT socket with 1008', async () => {
    const cookie = await signIn(['stt']);
    const { client, wsOptions } = proxyClient(cookie);
    const f = fixture('speech_s16_16k');
    const stt = client.stt.manualFinalize.websocket(
      { model: 'ink-whisper', encoding: f.encoding, sample_rate: f.sample_rate },
      wsOptions,
    );
    const rec = record(stt);
    await rec.until((e) => e.type === 'open', 'open');
    stt.sendRaw(chunks(f.bytes, f.sample_rate, 2).next().value);

    const res = await fetch(SERVER_URL + '/api/logout', {
      method: 'POST',
      headers: { Cookie: cookie, 'X-CSRF': '1', Origin: SERVER_URL },
    });
    assert.equal(res.status, 204);
    const { code, reason } = await rec.closed();
    assert.equal(code, 1008);
    assert.equal(reason, 'session ended');
  });
});
