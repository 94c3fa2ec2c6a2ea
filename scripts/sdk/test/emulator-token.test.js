// The SDK against bin/emulator with an access token it minted itself, as a browser app
// would hold one (the Node SDK still sends it as Authorization: Bearer).
'use strict';

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const { tokenClient } = require('./lib');
const { speechSuite } = require('./suite');

speechSuite('emulator-token', async () => ({ client: await tokenClient(), wsOptions: undefined }));

describe('emulator-token: access tokens', () => {
  test('an access token cannot mint another (API key only)', async () => {
    const client = await tokenClient();
    await assert.rejects(
      client.accessToken.create({ grants: { tts: true }, expires_in: 60 }),
      (err) => err.status === 401 || err.status === 403,
    );
  });

  test('a token without the stt grant cannot open the STT WebSocket', async () => {
    const client = await tokenClient({ tts: true });
    const stt = client.stt.manualFinalize.websocket({ model: 'ink-whisper', encoding: 'pcm_s16le',
      sample_rate: 16000 });
    const failure = new Promise((resolve) => stt.on('error', (e) => resolve(e)));
    assert.match((await failure).message, /40[13]/);
  });
});
