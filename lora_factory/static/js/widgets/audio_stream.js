// Plays speech while it is still being made: each {"type": "audio", "chunk": base64 PCM16 mono,
// "sample_rate"} event is decoded and scheduled right after the previous one with the Web Audio
// API; the finished file then appears as an ordinary player with a download link.
import { h, setI18n } from "../dom.js";

function decodePcm16(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
  const pcm = new Int16Array(bytes.buffer, 0, Math.floor(bytes.length / 2));
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i += 1) out[i] = pcm[i] / 32768;
  return out;
}

/**
 * @param {object} opts testid, autoplay (default true)
 * @returns {{root, start(), push(event), finish(event), reset(), stats()}}
 */
export function createStreamPlayer(opts = {}) {
  const testid = opts.testid || "stream-player";
  const status = h("span", { class: "muted small-text", testid: `${testid}-status` });
  const finalBox = h("div", { class: "row wrap", testid: `${testid}-final` });
  const root = h("div", { class: "stream-player", testid, "data-chunks": "0" }, status, finalBox);
  let ctx = null;
  let nextTime = 0;
  let chunks = 0;
  let startedAt = 0;
  let firstAt = null;
  let seconds = 0;

  function audioContext() {
    if (opts.autoplay === false) return null;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!ctx) ctx = new Ctx();
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    return ctx;
  }

  function show() {
    root.dataset.chunks = String(chunks);
    setI18n(status, "media.stream_status", { chunks, seconds: seconds.toFixed(1), first: firstAt === null ? "-" : String(Math.round(firstAt)) });
  }

  return {
    root,
    start() {
      chunks = 0;
      seconds = 0;
      firstAt = null;
      startedAt = performance.now();
      finalBox.replaceChildren();
      nextTime = 0;
      audioContext();
      show();
    },
    push(event) {
      const samples = decodePcm16(event.chunk);
      const rate = Number(event.sample_rate) || 24000;
      chunks += 1;
      seconds += samples.length / rate;
      if (firstAt === null) {
        firstAt = performance.now() - startedAt;
        root.dataset.firstChunkMs = String(Math.round(firstAt));
      }
      const ac = audioContext();
      if (ac) {
        const buffer = ac.createBuffer(1, samples.length, rate);
        buffer.copyToChannel(samples, 0);
        const src = ac.createBufferSource();
        src.buffer = buffer;
        src.connect(ac.destination);
        nextTime = Math.max(nextTime, ac.currentTime + 0.05);
        src.start(nextTime);
        nextTime += buffer.duration;
      }
      show();
    },
    finish(event) {
      if (!event || !event.url) return;
      finalBox.replaceChildren(
        h("audio", { controls: true, src: event.url, testid: `${testid}-audio` }),
        h("a", { href: event.url, download: event.name || "", class: "small-text", i18n: "media.download", testid: `${testid}-download` }),
      );
    },
    reset() {
      chunks = 0;
      finalBox.replaceChildren();
      status.textContent = "";
      root.dataset.chunks = "0";
    },
    stats: () => ({ chunks, seconds, firstChunkMs: firstAt }),
  };
}
