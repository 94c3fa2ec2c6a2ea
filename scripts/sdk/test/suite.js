// The calls every target must answer the way the official SDK expects: TTS bytes, SSE and
// WebSocket, both STT WebSockets and batch STT. Audio the SDK receives is saved for
// sdk_test.go to decode; what the SDK itself parses (events, ids, transcripts, close codes)
// is checked here.
'use strict';

const assert = require('node:assert/strict');
const { describe, test, before } = require('node:test');
const {
  BYTES_PER_SAMPLE,
  STREAM_TIMEOUT_MS,
  VOICE,
  chunks,
  collect,
  fixture,
  record,
  saveAudio,
  socketClosed,
} = require('./lib');

/**
 * speechSuite registers the shared tests for one target. setup() returns {client,
 * wsOptions}: the SDK client and the options its WebSockets need.
 */
function speechSuite(target, setup) {
  describe(`${target}: speech calls`, () => {
    let client;
    let wsOptions;
    before(async () => {
      ({ client, wsOptions } = await setup());
    });

    const tts = (transcript, output_format, extra = {}) => ({
      model_id: 'sonic-3',
      voice: VOICE,
      language: 'en',
      transcript,
      output_format,
      ...extra,
    });

    test('tts.generate (bytes) returns a WAV file of the transcript', async () => {
      const text = 'The SDK asked for a WAV file.';
      const format = { container: 'wav', encoding: 'pcm_s16le', sample_rate: 24000 };
      const res = await client.tts.generate(tts(text, format, { voice: { id: VOICE } }));
      assert.equal(res.status, 200);
      const bytes = new Uint8Array(await res.arrayBuffer());
      assert.equal(Buffer.from(bytes.subarray(0, 4)).toString(), 'RIFF');
      saveAudio(`${target}-bytes-wav`, bytes, format, text);
    });

    test('tts.generate (bytes) returns raw float samples', async () => {
      const text = 'Raw floats, please.';
      const format = { container: 'raw', encoding: 'pcm_f32le', sample_rate: 22050 };
      const res = await client.tts.generate(tts(text, format));
      const bytes = new Uint8Array(await res.arrayBuffer());
      assert.equal(bytes.length % 4, 0, 'whole float32 samples');
      saveAudio(`${target}-bytes-raw-f32`, bytes, format, text);
    });

    test('tts.generateSSE streams chunks, word timestamps and done for the context', async () => {
      const text = 'Streaming over server sent events.';
      const format = { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 };
      const stream = await client.tts.generateSSE(
        tts(text, format, { add_timestamps: true, context_id: 'sse-ctx-1' }),
      );
      const events = await collect(stream);

      const types = events.map((e) => e.type);
      assert.ok(!types.includes('error'), `error event: ${JSON.stringify(events)}`);
      assert.equal(types.at(-1), 'done', `last event of ${types}`);
      assert.equal(types.filter((t) => t === 'done').length, 1);
      for (const e of events) assert.equal(e.context_id, 'sse-ctx-1', `context_id echoed on ${e.type}`);

      const audio = events.filter((e) => e.type === 'chunk');
      assert.ok(audio.length >= 1, 'at least one chunk');
      for (const c of audio) {
        assert.equal(typeof c.data, 'string');
        assert.equal(c.done, false);
      }
      const words = events.filter((e) => e.type === 'timestamps').flatMap((e) => checkTimestamps(e));
      assert.equal(words.join(' '), text);

      const bytes = Buffer.concat(audio.map((c) => Buffer.from(c.data, 'base64')));
      saveAudio(`${target}-sse`, bytes, format, text);
    });

    test('tts.generateSSE refuses an unknown model with a 400', async () => {
      const format = { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 };
      const request = { ...tts('No model.', format), model_id: 'no-such-model' };
      // Cartesia may refuse before the stream (HTTP 400) or inside it (error event); either
      // must carry 400.
      let status;
      try {
        const events = await collect(await client.tts.generateSSE(request));
        const err = events.find((e) => e.type === 'error');
        assert.ok(err, `no error for an unknown model: ${JSON.stringify(events)}`);
        status = err.status_code;
      } catch (err) {
        status = err.status;
      }
      assert.equal(status, 400);
    });

    test('tts.websocket multiplexes contexts, flushes, and ends each with done', async () => {
      const ws = await client.tts.websocket(wsOptions);
      const errors = [];
      ws.on('error', (e) => errors.push(e));
      const closed = socketClosed(ws);

      const format = { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 };
      const mulaw = { container: 'raw', encoding: 'pcm_mulaw', sample_rate: 8000 };
      const base = { model_id: 'sonic-3', voice: VOICE, language: 'en', timeout: STREAM_TIMEOUT_MS };
      const a = ws.context({ ...base, contextId: 'ctx-a', output_format: format, add_timestamps: true });
      const b = ws.context({ ...base, contextId: 'ctx-b', output_format: mulaw });

      await a.push({ transcript: 'Hello there, ', flush: true });
      await b.push({ transcript: 'Second context speaking.' });
      await a.push({ transcript: 'how are you?' });
      await a.no_more_inputs();
      await b.no_more_inputs();
      const [ea, eb] = await Promise.all([collect(a.receive()), collect(b.receive())]);

      for (const [events, id] of [
        [ea, 'ctx-a'],
        [eb, 'ctx-b'],
      ]) {
        assert.equal(events.at(-1)?.type, 'done', `${id} ends with done: ${events.map((e) => e.type)}`);
        assert.equal(events.at(-1).done, true);
        for (const e of events) assert.equal(e.context_id, id, `${e.type} routed to ${id}`);
        assert.ok(events.some((e) => e.type === 'chunk'), `${id} has audio`);
      }

      const flushes = ea.filter((e) => e.type === 'flush_done');
      assert.equal(flushes.length, 1, 'one flush_done for one flush');
      assert.equal(flushes[0].flush_id, 1);
      assert.equal(flushes[0].flush_done, true);
      const afterFlush = ea.slice(ea.indexOf(flushes[0]) + 1).filter((e) => e.type === 'chunk');
      for (const c of afterFlush) {
        if (c.flush_id !== undefined) assert.equal(c.flush_id, 2, 'chunks after the flush count on');
      }
      const words = ea.filter((e) => e.type === 'timestamps').flatMap((e) => checkTimestamps(e));
      assert.equal(words.join(' '), 'Hello there, how are you?');
      assert.ok(!eb.some((e) => e.type === 'timestamps'), 'no timestamps unless asked');

      const audio = (events) => Buffer.concat(events.filter((e) => e.type === 'chunk').map((e) => e.audio));
      saveAudio(`${target}-ws-ctx-a`, audio(ea), format, 'Hello there, how are you?');
      saveAudio(`${target}-ws-ctx-b`, audio(eb), mulaw, 'Second context speaking.');

      ws.close();
      const { code } = await closed;
      assert.equal(code, 1000);
      assert.deepEqual(errors, []);
    });

    test('tts.websocket reports a bad request as an error event on its context', async () => {
      const ws = await client.tts.websocket(wsOptions);
      const errors = [];
      const events = [];
      ws.on('error', (e) => errors.push(e));
      ws.on('event', (e) => events.push(e));

      const ctx = ws.context({
        contextId: 'ctx-bad',
        model_id: 'no-such-model',
        voice: VOICE,
        output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 },
        timeout: STREAM_TIMEOUT_MS,
      });
      await ctx.push({ transcript: 'This model does not exist.' });
      await ctx.no_more_inputs();
      await assert.rejects(collect(ctx.receive()), (err) => err.name === 'CartesiaError' || !!err.message);

      const err = events.find((e) => e.type === 'error');
      assert.ok(err, `an error event: ${JSON.stringify(events)}`);
      assert.equal(err.done, true);
      assert.equal(err.status_code, 400);
      assert.equal(err.context_id, 'ctx-bad');
      assert.equal(errors.length, 1, 'the SDK surfaced it once');
      ws.close();
    });

    for (const name of ['speech_s16_16k', 'speech_mulaw_8k']) {
      test(`stt.manualFinalize.websocket transcribes ${name} on finalize, then done and close`, async () => {
        const f = fixture(name);
        const stt = client.stt.manualFinalize.websocket(
          { model: 'ink-whisper', encoding: f.encoding, sample_rate: f.sample_rate, language: 'en' },
          wsOptions,
        );
        const rec = record(stt);
        for (const piece of chunks(f.bytes, f.sample_rate, BYTES_PER_SAMPLE[f.encoding])) stt.sendRaw(piece);
        stt.send('finalize');
        await rec.until((e) => e.type === 'message' && e.message.type === 'flush_done', 'flush_done');
        stt.send('close');
        await rec.until((e) => e.type === 'message' && e.message.type === 'done', 'done');
        const { code } = await rec.closed();

        assert.deepEqual(rec.errors(), []);
        const messages = rec.messages();
        const finals = messages.filter((m) => m.type === 'transcript' && m.is_final);
        assert.equal(finals.map((m) => m.text).join(''), f.text, JSON.stringify(messages));
        const ids = new Set(messages.map((m) => m.request_id));
        assert.equal(ids.size, 1, 'one request_id per connection');
        assert.ok([...ids][0], 'request_id present');
        assert.equal(messages.at(-1).type, 'done');
        assert.equal(code, 1000);
      });
    }

    test('stt.autoFinalize.websocket reports connected and a turn with the transcript', async () => {
      const f = fixture('turn_s16_16k');
      const turns = client.stt.autoFinalize.websocket(
        { model: 'ink-2', encoding: f.encoding, sample_rate: f.sample_rate },
        wsOptions,
      );
      const rec = record(turns);
      for (const piece of chunks(f.bytes, f.sample_rate, 2)) turns.sendRaw(piece);
      await rec.until(
        (e) => e.type === 'message' && e.message.type === 'turn.end',
        'turn.end after the trailing silence',
      );
      turns.send({ type: 'close' });
      await rec.closed();

      assert.deepEqual(rec.errors(), []);
      const messages = rec.messages();
      const types = messages.map((m) => m.type);
      assert.equal(types[0], 'connected');
      assert.ok(types.indexOf('turn.start') > 0, `turn.start in ${types}`);
      assert.ok(types.indexOf('turn.start') < types.indexOf('turn.end'), `order ${types}`);
      const end = messages.find((m) => m.type === 'turn.end');
      assert.equal(end.transcript, f.text);
      assert.equal(new Set(messages.map((m) => m.request_id)).size, 1, 'one request_id');
    });

    test('stt.transcribe (batch) decodes a WAV upload with word timestamps', async () => {
      const f = fixture('speech_wav_16k');
      const { toFile } = require('@cartesia/cartesia-js');
      const res = await client.stt.transcribe({
        file: await toFile(f.bytes, 'speech.wav', { type: 'audio/wav' }),
        model: 'ink-whisper',
        language: 'en',
        timestamp_granularities: ['word'],
      });
      assert.equal(res.type, 'transcript');
      assert.equal(res.text, f.text);
      assert.ok(Array.isArray(res.words), `words: ${JSON.stringify(res)}`);
      assert.equal(res.words.map((w) => w.word).join(' '), f.text);
      for (const w of res.words) assert.ok(w.end >= w.start && w.start >= 0, JSON.stringify(w));
      assert.ok(res.duration > 0, 'duration');
    });

    test('stt.transcribe (batch) takes raw PCM with encoding and sample_rate', async () => {
      const f = fixture('speech_s16_16k');
      const { toFile } = require('@cartesia/cartesia-js');
      const res = await client.stt.transcribe({
        file: await toFile(f.bytes, 'speech.pcm', { type: 'application/octet-stream' }),
        model: 'ink-whisper',
        encoding: f.encoding,
        sample_rate: f.sample_rate,
      });
      assert.equal(res.text, f.text);
      assert.equal(res.words, undefined, 'no words unless asked');
    });
  });
}

/** checkTimestamps validates one timestamps event and returns its words. */
function checkTimestamps(e) {
  const ts = e.word_timestamps;
  assert.ok(ts, `word_timestamps in ${JSON.stringify(e)}`);
  assert.equal(ts.start.length, ts.words.length);
  assert.equal(ts.end.length, ts.words.length);
  for (let i = 0; i < ts.words.length; i++) {
    assert.ok(ts.end[i] >= ts.start[i], `word ${ts.words[i]} ends after it starts`);
    if (i > 0) assert.ok(ts.start[i] >= ts.end[i - 1], 'words in order');
  }
  return ts.words;
}

module.exports = { speechSuite };
