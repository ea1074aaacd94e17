// Streaming speech player: reads PCM16 chunks from /v1/audio/speech as they arrive, schedules them on
// an AudioContext without gaps, and keeps every byte so the whole utterance can be downloaded as WAV.
// (The host's generic stream widget can replace this module once it exists.)

export function wavBlob(pcmChunks, sampleRate) {
  const size = pcmChunks.reduce((n, c) => n + c.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((ch, i) => header.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + size, true);
  text(8, "WAVEfmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true);
  header.setUint16(22, 1, true);
  header.setUint32(24, sampleRate, true);
  header.setUint32(28, sampleRate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, size, true);
  return new Blob([header.buffer, ...pcmChunks], { type: "audio/wav" });
}

/**
 * POST body to /v1/audio/speech (response_format pcm, 24 kHz) and play it while it streams.
 * onChunk({index, bytes, elapsedMs}) is called per network chunk; resolves to {blob, firstMs, totalMs, chunks}.
 */
export async function streamSpeech(body, { onChunk, play = true, signal } = {}) {
  const rate = 24000;
  const started = performance.now();
  const res = await fetch("/v1/audio/speech", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, response_format: "pcm" }),
    signal,
  });
  if (!res.ok) {
    let err = {};
    try {
      err = (await res.json()).error || {};
    } catch {
      err = {};
    }
    const e = new Error(err.message || `HTTP ${res.status}`);
    e.message_ja = err.message_ja;
    e.code = err.code;
    throw e;
  }
  let ctx = null;
  if (play && typeof AudioContext !== "undefined") {
    try {
      ctx = new AudioContext({ sampleRate: rate });
    } catch {
      ctx = null;
    }
  }
  let playAt = ctx ? ctx.currentTime + 0.05 : 0;
  const chunks = [];
  let carry = new Uint8Array(0);
  let firstMs = null;
  const reader = res.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!value || !value.byteLength) continue;
    if (firstMs === null) firstMs = performance.now() - started;
    const joined = new Uint8Array(carry.byteLength + value.byteLength);
    joined.set(carry);
    joined.set(value, carry.byteLength);
    const usable = joined.byteLength - (joined.byteLength % 2);
    const pcm = joined.slice(0, usable);
    carry = joined.slice(usable);
    chunks.push(pcm.buffer);
    if (ctx && pcm.byteLength) {
      const samples = new Int16Array(pcm.buffer);
      const buffer = ctx.createBuffer(1, samples.length, rate);
      const channel = buffer.getChannelData(0);
      for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      playAt = Math.max(playAt, ctx.currentTime);
      source.start(playAt);
      playAt += buffer.duration;
    }
    if (onChunk) onChunk({ index: chunks.length - 1, bytes: pcm.byteLength, elapsedMs: performance.now() - started });
  }
  return { blob: wavBlob(chunks, rate), firstMs, totalMs: performance.now() - started, chunks: chunks.length };
}
