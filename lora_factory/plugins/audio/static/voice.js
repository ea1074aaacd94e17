// 音声スタジオ / Voice studio: the audio plugin's own tab, registered for its modality through the
// host's register_ui hook (served from the plugin's static/ folder; host modules imported by URL).
// Sections: the dataset table (play each clip, edit its transcript inline -> a new version through
// the edit_items refine), the builder
// (long recordings -> slice -> transcribe -> review), training with live samples, synthesis with
// prosody sliders and a streaming player, transcription, and the user dictionary. The dataset browser
// and the stream player are the host's widgets.
import { api, get, post, postSSE, put, watchJob } from "/static/js/api.js";
import { clear, h, newId, notify, setBilingual, showError, withBusy } from "/static/js/dom.js";
import { getLang } from "/static/js/i18n.js";
import { createStreamPlayer } from "/static/js/widgets/audio_stream.js";
import { createFolderBrowser } from "/static/js/widgets/folder_browser.js";
import { registerTab } from "/static/js/tabs/registry.js";
import { accentEditor } from "./accent_editor.js";
import { sliceReviewSection } from "./slice_review.js";

const bi = (ja, en) => ({ bi: { ja, en } });
const M = "audio";

// The host's widgets and layout (a card with a form grid, <label for> fields, full-width rows for
// everything else), so the studio reads like the other tabs.
function section(testid, ja, en, ...children) {
  return h("section", { class: "card form-grid voice-section", testid }, h("h2", { class: "full", ...bi(ja, en) }), ...children);
}

function labelled(ja, en, control) {
  const target = control.matches && control.matches("input, select, textarea") ? control : control.querySelector && control.querySelector("input, select, textarea");
  if (target && !target.id) target.id = newId("voice");
  return h("div", { class: "field" }, h("label", { for: target ? target.id : undefined, ...bi(ja, en) }), control);
}

function slider(name, min, max, step, value, unit) {
  const out = h("output", { testid: `voice-${name}-value` }, `${value}${unit}`);
  const input = h("input", { type: "range", min, max, step, value, testid: `voice-${name}`, name });
  input.addEventListener("input", () => {
    out.textContent = `${input.value}${unit}`;
  });
  return { input, row: h("div", { class: "slider-row" }, input, out) };
}

async function modelsOf(kind) {
  const list = (await get(`/api/models?modality=${M}`)).models || [];
  return list.filter((m) => !kind || m.model_role === kind);
}

function fillSelect(sel, items, empty) {
  clear(sel);
  if (empty) sel.append(h("option", { value: "" }, empty));
  for (const item of items) sel.append(h("option", { value: item.value }, item.label));
}

// ---- dataset table: play + inline transcript edit (the host's folder-dataset browser) ----
function datasetSection(state, app) {
  const pick = h("select", { testid: "voice-dataset-select" });
  const stats = h("div", { class: "muted", testid: "voice-dataset-stats" });
  const browser = createFolderBrowser(app, { testid: "voice-browser", onJob: (id) => {
    notify("info", `新しい版を作成中です（ジョブ ${id}）`, `Creating the new version (job ${id})`);
    // once saved, show the new version (not the old one with the edit seemingly undone)
    watchJob(id, { onEnd: async () => {
      const job = await get(`/api/jobs/${encodeURIComponent(id)}`).catch(() => null);
      const name = job && job.status === "completed" && job.spec && job.spec.output_name;
      if (!name) return;
      await refresh();
      if ([...pick.options].some((o) => o.value === name)) {
        pick.value = name;
        await load();
      }
    } });
  } });

  // exports other tools open (the plugin's dataset_exports: Style-Bert-VITS2, GPT-SoVITS)
  const sbv2 = h("a", { class: "button", testid: "voice-export-sbv2", download: "", ...bi("SBV2 用に書き出す", "Export for SBV2") });
  const gsv = h("a", { class: "button", testid: "voice-export-gpt_sovits", download: "", ...bi("GPT-SoVITS 用に書き出す", "Export for GPT-SoVITS") });
  const exports = h("div", { class: "row", hidden: true }, sbv2, gsv);

  async function load() {
    exports.hidden = !pick.value;
    if (!pick.value) return;
    const archive = `/api/datasets/${M}/${encodeURIComponent(pick.value)}/archive`;
    sbv2.href = `${archive}?target=sbv2`;
    gsv.href = `${archive}?target=gpt_sovits`;
    const info = await browser.show(pick.value);
    const s = (info && info.stats) || {};
    // in words, not JSON: "16000 Hz ×3, 44100 Hz ×1", "−20.1 LUFS (−24.0 … −18.2)"
    const rates = Object.entries(s.sample_rates || {}).map(([hz, n]) => `${hz} Hz ×${n}`).join(", ") || "?";
    const l = s.loudness || {};
    const lufs = l.lufs_median != null ? `${l.lufs_median} LUFS (${l.lufs_min ?? "?"} … ${l.lufs_max ?? "?"})` : "";
    const speakers = Object.keys(s.speakers || {}).filter(Boolean).join(", ");
    setBilingual(stats, [`${s.clips ?? "?"} クリップ`, `${s.total_minutes ?? "?"} 分`, rates, lufs && `音量の中央値 ${lufs}`,
      speakers && `話者 ${speakers}`].filter(Boolean).join("・"),
    [`${s.clips ?? "?"} clips`, `${s.total_minutes ?? "?"} min`, rates, lufs && `median loudness ${lufs}`,
      speakers && `speakers ${speakers}`].filter(Boolean).join(", "));
  }
  pick.addEventListener("change", () => load().catch(showError));

  async function refresh() {
    const list = (await get(`/api/datasets?modality=${M}`)).datasets || [];
    const keep = pick.value;
    fillSelect(pick, list.map((d) => ({ value: d.name, label: d.name })), "—");
    if (list.some((d) => d.name === keep)) pick.value = keep;
    state.datasets = list;
    if (pick.value) await load();
  }
  return { el: section("voice-datasets", "データセット（再生・文字起こしの編集）", "Dataset (play, edit transcripts)",
    labelled("データセット", "Dataset", pick), stats, exports, browser.root), refresh };
}

const STATUS_WORDS = { completed: ["完了", "Done"], failed: ["失敗", "Failed"], cancelled: ["中止", "Cancelled"] };

// a finished job in words: the outcome, the clips made, what was dropped and why, the plugin's notes
async function showJobEnd(el, jobId, j) {
  const job = await get(`/api/jobs/${encodeURIComponent(jobId)}`).catch(() => j || {});
  const [ja, en] = STATUS_WORDS[job.status] || [job.status, job.status];
  const r = job.result || {};
  const removed = Object.entries(r.removed || {}).map(([k, v]) => `${k} ×${v}`).join(", ");
  const rows = r.rows_out != null ? `${r.rows_out}` : "";
  const err = job.error || {};
  const notes = (r.notes || []).join(" ");
  setBilingual(el,
    [ja, rows && `${rows} クリップ`, removed && `除外: ${removed}`, err.message_ja || err.message, notes].filter(Boolean).join("・"),
    [en, rows && `${rows} clips`, removed && `removed: ${removed}`, err.message, notes].filter(Boolean).join(" · "));
  el.dataset.status = job.status || "";
}

// ---- builder: upload recordings -> slice -> transcribe ----
function builderSection(state) {
  const file = h("input", { type: "file", accept: ".zip,.wav,.flac,.ogg,.mp3", multiple: true, testid: "voice-builder-files" });
  const name = h("input", { type: "text", value: "recordings", testid: "voice-builder-name" });
  const asr = h("select", { testid: "voice-builder-asr" });
  const prompt = h("input", { type: "text", value: "", testid: "voice-builder-prompt", placeholder: "はい。こんにちは、元気です。" });
  const minS = h("input", { type: "number", value: "2", step: "0.5", testid: "voice-builder-min" });
  const maxS = h("input", { type: "number", value: "12", step: "0.5", testid: "voice-builder-max" });
  const status = h("div", { class: "muted", testid: "voice-builder-status" });
  const run = h("button", { type: "button", testid: "voice-builder-run", ...bi("アップロード → 分割 → 文字起こし", "Upload -> slice -> transcribe") });
  run.addEventListener("click", () => withBusy(run, async () => {
    let source = state.builderSource;
    if (file.files.length) {
      const form = new FormData();
      form.append("modality", M);
      form.append("name", name.value);
      // one zip is a whole folder dataset ("file"); recordings (wav / flac / ogg / mp3, one or more) are
      // the files of a new folder ("files")
      const picked = [...file.files];
      const oneZip = picked.length === 1 && picked[0].name.toLowerCase().endsWith(".zip");
      for (const f of picked) form.append(oneZip ? "file" : "files", f, f.name);
      const up = await api("POST", "/api/datasets/upload", form);
      source = up.name || name.value;
    }
    if (!source) throw Object.assign(new Error("Choose recordings to upload."), { message_ja: "録音ファイルを選んでください。" });
    const ops = [{ op: "slice", params: { min_seconds: Number(minS.value), max_seconds: Number(maxS.value) } }];
    if (asr.value) ops.push({ op: "transcribe", params: { model: asr.value, prompt: prompt.value } });
    const job = await post("/api/datasets/refine", { modality: M, dataset: source, output_name: `${source}-clips`, operations: ops });
    setBilingual(status, `ジョブ ${job.job_id} を実行中…`, `Job ${job.job_id} running…`);
    watchJob(job.job_id, { onEnd: (j) => showJobEnd(status, job.job_id, j).catch(showError) });
  }));
  async function refresh() {
    const list = await modelsOf("asr");
    fillSelect(asr, list.map((m) => ({ value: m.name, label: m.name })), getLang() === "ja" ? "（文字起こししない）" : "(no transcription)");
  }
  return { el: section("voice-builder", "データセットビルダー", "Dataset builder",
    labelled("長い録音（zip / wav / flac / ogg / mp3）", "Long recordings (zip / wav / flac / ogg / mp3)", file),
    labelled("名前", "Name", name), labelled("最短秒", "Min seconds", minS), labelled("最長秒", "Max seconds", maxS),
    labelled("Whisper モデル", "Whisper model", asr), labelled("文字起こしのプロンプト（句読点の例）", "Prompt (punctuation style)", prompt),
    run, status), refresh };
}

// ---- training with live samples ----
function trainSection(state) {
  const base = h("select", { testid: "voice-train-base" });
  const data = h("select", { testid: "voice-train-dataset" });
  const preset = h("select", { testid: "voice-train-preset" });
  const output = h("input", { type: "text", value: "my-voice", testid: "voice-train-output" });
  const text = h("input", { type: "text", value: "こんにちは。今日はいい天気ですね。", testid: "voice-train-sample-text" });
  const progress = h("div", { class: "muted", testid: "voice-train-progress" });
  const samples = h("div", { class: "samples", testid: "voice-train-samples" });
  const start = h("button", { type: "button", testid: "voice-train-start", ...bi("学習を開始", "Start training") });
  start.addEventListener("click", () => withBusy(start, async () => {
    const job = await post("/train/start", { modality: M, base_model: base.value, dataset: data.value, preset: preset.value,
      output_name: output.value, params: { sample_text: text.value } });
    clear(samples);
    follow(job.job_id);
  }));
  function addSample(ev) {
    const url = ev.url || ev.file;
    if (!url) return;
    samples.append(h("div", { class: "sample", testid: "voice-train-sample" }, h("span", {}, `step ${ev.step ?? ""}`),
      h("audio", { controls: true, src: url, preload: "none" })));
  }
  function follow(jobId) {
    if (typeof EventSource !== "undefined") {
      const source = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events`);
      source.addEventListener("sample", (ev) => {
        try {
          addSample(JSON.parse(ev.data));
        } catch {
          // a malformed event is skipped
        }
      });
      source.addEventListener("end", () => source.close());
      source.onerror = () => source.close();
    }
    watchJob(jobId, {
      onProgress: (r) => setBilingual(progress, `ステップ ${r.step}/${r.max_steps} 損失 ${r.loss ?? "-"}`, `step ${r.step}/${r.max_steps} loss ${r.loss ?? "-"}`),
      onEnd: (j) => showJobEnd(progress, jobId, j).catch(showError),
    });
  }
  async function refresh(info) {
    fillSelect(base, (await modelsOf("tts")).concat(await modelsOf("asr")).map((m) => ({ value: m.name, label: `${m.name} (${m.model_role})` })));
    fillSelect(data, (state.datasets || []).map((d) => ({ value: d.name, label: d.name })));
    fillSelect(preset, Object.keys(info.presets || {}).map((p) => ({ value: p, label: p })));
    if (info.default_preset) preset.value = info.default_preset;
  }
  return { el: section("voice-train", "声の学習（サンプル音声つき）", "Voice training (with samples)",
    labelled("ベースモデル", "Base model", base), labelled("データセット", "Dataset", data), labelled("プリセット", "Preset", preset),
    labelled("出力名", "Output name", output), labelled("サンプル音声の文", "Sample sentence", text), start, progress, samples), refresh };
}

// ---- synthesis ----
function synthSection() {
  const base = h("select", { testid: "voice-synth-base" });
  const adapter = h("select", { testid: "voice-synth-adapter" });
  const text = h("textarea", { rows: 3, testid: "voice-synth-text" }, "こんにちは。今日は1,100円の本を買いました。");
  const speed = slider("speed", 0.5, 2, 0.05, 1, "x");
  const pitch = slider("pitch", -6, 6, 0.5, 0, " st");
  const volume = slider("volume", -12, 6, 1, 0, " dB");
  const pause = slider("pause", 0, 1500, 50, 250, " ms");
  const temperature = slider("temperature", 0, 1.5, 0.05, 0.8, "");
  const topP = slider("top-p", 0.1, 1, 0.05, 1, "");
  const seed = h("input", { type: "number", value: "0", testid: "voice-seed" });
  const readOut = h("div", { class: "reading", testid: "voice-reading" });
  const format = h("select", { testid: "voice-format" }, h("option", { value: "wav" }, "WAV"), h("option", { value: "flac" }, "FLAC"),
    h("option", { value: "mp3" }, "MP3"), h("option", { value: "opus" }, "Opus"));
  const maxSeconds = h("input", { type: "number", value: "20", min: "1", max: "120", testid: "voice-max-seconds" });
  // a voice to clone from a few seconds of recording and what it says (zero-shot; with a LoRA too)
  const refAudio = h("input", { type: "file", accept: ".wav,.flac,.ogg,.mp3", testid: "voice-ref-audio" });
  const refText = h("input", { type: "text", value: "", testid: "voice-ref-text", placeholder: "こんにちは、よろしくお願いします。" });
  const player = createStreamPlayer({ testid: "voice-stream" });
  const preview = h("button", { type: "button", testid: "voice-read", ...bi("読み方を確認", "Check the reading") });
  const speak = h("button", { type: "button", testid: "voice-speak", class: "primary", ...bi("合成（ストリーミング再生）", "Speak (streamed)") });
  text.addEventListener("input", () => clear(readOut));  // a reading of the old text is no reading of this one
  async function showReading() {
    const r = await post("/api/audio/read", { text: text.value });
    clear(readOut);
    readOut.append(h("div", { testid: "voice-normalized" }, r.normalized), h("div", { class: "muted", testid: "voice-accent" }, r.reading.accent || ""),
      accentEditor(r.reading.phrases, showReading));
  }
  preview.addEventListener("click", () => withBusy(preview, showReading));
  speak.addEventListener("click", () => withBusy(speak, async () => {
    player.start();
    const params = {
      speed: Number(speed.input.value), pitch: Number(pitch.input.value), volume_db: Number(volume.input.value),
      pause_ms: Number(pause.input.value), temperature: Number(temperature.input.value), top_p: Number(topP.input.value),
      seed: Number(seed.value), format: format.value, max_seconds_per_sentence: Number(maxSeconds.value),
    };
    const input = { text: text.value };
    if (refAudio.files.length) {
      const form = new FormData();
      form.append("file", refAudio.files[0], refAudio.files[0].name);
      input.reference_audio = (await post("/api/infer/uploads", form)).value;
      input.reference_text = refText.value;
    }
    await postSSE("/api/infer/generate", { modality: M, task: "speech", base_model: base.value, adapter: adapter.value || null,
      input, params, stream: true }, (name, ev) => {
      if (name === "error" || (ev && ev.type === "error")) throw Object.assign(new Error(ev.message || "error"), { message_ja: ev.message_ja });
      if (ev && ev.chunk) player.push(ev);
      else if (ev && ev.url) player.finish(ev);
    });
  }));
  async function refresh() {
    fillSelect(base, (await modelsOf("tts")).map((m) => ({ value: m.name, label: m.name })));
    const adapters = (await get(`/api/adapters?modality=${M}`)).adapters || [];
    fillSelect(adapter, adapters.map((a) => ({ value: a.name, label: a.name })), getLang() === "ja" ? "（ベースのみ）" : "(base only)");
  }
  return { el: section("voice-synth", "音声合成", "Speech synthesis",
    labelled("TTS モデル", "TTS model", base), labelled("声（アダプター）", "Voice (adapter)", adapter), labelled("文", "Text", text),
    labelled("話速", "Speed", speed.row), labelled("ピッチ", "Pitch", pitch.row), labelled("音量", "Volume", volume.row),
    labelled("文の間の無音", "Pause between sentences", pause.row), labelled("温度", "Temperature", temperature.row),
    labelled("top-p", "top-p", topP.row), labelled("シード", "Seed", seed), labelled("形式", "Format", format),
    labelled("1文の最大秒数", "Max seconds per sentence", maxSeconds),
    labelled("クローンする声（数秒の録音・任意）", "Voice to clone (a few seconds, optional)", refAudio),
    labelled("その録音の書き起こし", "What that recording says", refText),
    h("div", { class: "row" }, preview, speak), readOut, player.root), refresh };
}

// ---- transcription ----
function transcribeSection() {
  const model = h("select", { testid: "voice-asr-model" });
  const file = h("input", { type: "file", accept: "audio/*", testid: "voice-asr-file" });
  const out = h("pre", { testid: "voice-asr-text" });
  const go = h("button", { type: "button", testid: "voice-asr-run", ...bi("文字起こし", "Transcribe") });
  go.addEventListener("click", () => withBusy(go, async () => {
    if (!file.files.length) return;
    const form = new FormData();
    form.append("file", file.files[0], file.files[0].name);
    form.append("model", model.value);
    form.append("response_format", "verbose_json");
    const r = await api("POST", "/v1/audio/transcriptions", form);
    out.textContent = [r.text, ...(r.segments || []).map((s) => `[${s.start.toFixed(2)}-${s.end.toFixed(2)}] ${s.text}`)].join("\n");
  }));
  async function refresh() {
    fillSelect(model, (await modelsOf("asr")).map((m) => ({ value: m.name, label: m.name })));
  }
  return { el: section("voice-transcribe", "文字起こし", "Transcription", labelled("Whisper モデル", "Whisper model", model), file, go, out), refresh };
}

// ---- user dictionary ----
function dictionarySection() {
  const table = h("table", { class: "list", testid: "voice-dict-table" });
  const surface = h("input", { type: "text", testid: "voice-dict-surface", placeholder: "LoRA" });
  const reading = h("input", { type: "text", testid: "voice-dict-reading", placeholder: "ローラ" });
  const add = h("button", { type: "button", testid: "voice-dict-add", ...bi("追加して保存", "Add and save") });
  let entries = [];
  function render() {
    clear(table);
    table.append(h("tr", {}, h("th", { scope: "col", ...bi("表記", "Surface") }), h("th", { scope: "col", ...bi("読み", "Reading") }), h("th", { scope: "col", ...bi("操作", "Actions") })));
    entries.forEach((e, i) => {
      const remove = h("button", { type: "button", testid: "voice-dict-remove", ...bi("削除", "Remove") });
      remove.addEventListener("click", () => withBusy(remove, async () => {
        entries = (await put("/api/audio/dictionary", { entries: entries.filter((_, j) => j !== i) })).entries;
        render();
      }));
      table.append(h("tr", { testid: "voice-dict-row" }, h("td", {}, e.surface), h("td", {}, e.reading), h("td", {}, remove)));
    });
  }
  add.addEventListener("click", () => withBusy(add, async () => {
    entries = (await put("/api/audio/dictionary", { entries: [...entries, { surface: surface.value, reading: reading.value }] })).entries;
    surface.value = "";
    reading.value = "";
    render();
  }));
  async function refresh() {
    entries = (await get("/api/audio/dictionary")).entries || [];
    render();
  }
  return { el: section("voice-dictionary", "ユーザー辞書（学習と合成で使われます）", "User dictionary (used in training and synthesis)",
    table, h("div", { class: "row" }, labelled("表記", "Surface", surface), labelled("読み（かな）", "Reading (kana)", reading), add)), refresh };
}

export function mount(panel, app) {
  if (!app.supports("speech")) {
    panel.append(h("p", { class: "muted", ...bi("このモダリティには音声スタジオがありません。", "This modality has no voice studio.") }));
    return {};
  }
  const state = {};
  const info = app.info();
  const licence = h("p", { class: "notice licence", testid: "voice-licences" }, info.licenses || "");
  const parts = [datasetSection(state, app), builderSection(state), sliceReviewSection(), trainSection(state), synthSection(), transcribeSection(), dictionarySection()];
  panel.append(h("h1", bi("音声スタジオ", "Voice studio")), licence, ...parts.map((p) => p.el));
  return {
    async onShow() {
      for (const part of parts) {
        try {
          await part.refresh(info);
        } catch (err) {
          showError(err);
        }
      }
    },
  };
}

registerTab("voice", { mount }, { modality: M, label_ja: "音声スタジオ", label_en: "Voice studio" });
