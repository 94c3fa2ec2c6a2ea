// The SDK against bin/emulator with an API key, the way a backend would use Cartesia.
'use strict';

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const { Cartesia } = require('@cartesia/cartesia-js');
const { EMULATOR_URL, VOICE, keyClient } = require('./lib');
const { speechSuite } = require('./suite');

speechSuite('emulator-key', async () => ({ client: keyClient(), wsOptions: undefined }));

describe('emulator-key: access tokens', () => {
  test('accessToken.create mints a JWT that carries only the asked grants', async () => {
    const { token } = await keyClient().accessToken.create({ grants: { tts: true }, expires_in: 60 });
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT');

    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
    assert.ok(claims.exp - claims.iat <= 60, `lifetime ${claims.exp - claims.iat}`);

    const tts = new Cartesia({ token, baseURL: EMULATOR_URL, maxRetries: 0 });
    const res = await tts.tts.generate({
      model_id: 'sonic-3',
      voice: VOICE,
      transcript: 'Granted.',
      output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 },
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();

    await assert.rejects(
      tts.stt.transcribe({ file: new File([new Uint8Array(3200)], 'x.pcm'), model: 'ink-whisper',
        encoding: 'pcm_s16le', sample_rate: 16000 }),
      (err) => err.status === 403,
      'no stt grant: 403 (insufficient_grant)',
    );
  });

  test('accessToken.create refuses expires_in over an hour', async () => {
    await assert.rejects(
      keyClient().accessToken.create({ grants: { tts: true }, expires_in: 3601 }),
      (err) => err.status === 400,
    );
  });

  test('a wrong API key is a 401 for REST and a refused upgrade for WebSockets', async () => {
    const bad = new Cartesia({ apiKey: 'sk_car_wrong', baseURL: EMULATOR_URL, maxRetries: 0 });
    await assert.rejects(bad.accessToken.create({ grants: { tts: true } }), (err) => err.status === 401);

    const stt = bad.stt.manualFinalize.websocket({ model: 'ink-whisper', encoding: 'pcm_s16le',
      sample_rate: 16000 });
    const failure = new Promise((resolve) => stt.on('error', (e) => resolve(e)));
    assert.match((await failure).message, /401/);
  });
});
