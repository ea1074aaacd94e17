// 分割の確認 / Slice review: a recording's waveform with the cut points the slicer proposes under the
// chosen silence settings; drag a cut's edge to move it, click a cut to select it, split it at the
// cursor, merge it with the next one, or delete it; then save the cut list as a new dataset version
// (the refine route's `slice` with `cuts`, so the host records its lineage). Its own file, imported by
// voice.js as one section, so the studio's layout can change without touching this.
import { get, post, watchJob } from "/static/js/api.js";
import { clear, h, setBilingual, showError, withBusy } from "/static/js/dom.js";

const bi = (ja, en) => ({ bi: { ja, en } });
const M = "audio";
const HEIGHT = 140;
const GRAB_PX = 6;

function num(testid, value, step, min) {
  return h("input", { type: "number", value: String(value), step: String(step), min: String(min), testid });
}

function field(ja, en, control) {
  return h("label", { class: "field" }, h("span", { class: "label", ...bi(ja, en) }), control);
}

export function sliceReviewSection() {
  const dataset = h("select", { testid: "slice-dataset" });
  const recording = h("select", { testid: "slice-recording" });
  const settings = {
    min_seconds: num("slice-min-seconds", 2, 0.5, 0.2), max_seconds: num("slice-max-seconds", 12, 0.5, 1),
    min_silence_ms: num("slice-min-silence", 300, 50, 50), pad_ms: num("slice-pad", 100, 10, 0),
  };
  const detect = h("button", { type: "button", testid: "slice-detect", ...bi("無音で分割を提案", "Propose cuts at pauses") });
  const canvas = h("canvas", { class: "slice-wave", testid: "slice-canvas", height: String(HEIGHT) });
  canvas.style.width = "100%";
  canvas.style.height = `${HEIGHT}px`;
  canvas.style.touchAction = "none";
  const list = h("ol", { class: "slice-list", testid: "slice-list" });
  const split = h("button", { type: "button", testid: "slice-split", ...bi("カーソル位置で分割", "Split at the cursor") });
  const merge = h("button", { type: "button", testid: "slice-merge", ...bi("次と結合", "Merge with the next") });
  const remove = h("button", { type: "button", testid: "slice-delete", ...bi("削除", "Delete") });
  const output = h("input", { type: "text", value: "", testid: "slice-output", placeholder: "recordings-clips" });
  const save = h("button", { type: "button", testid: "slice-save", ...bi("新しい版として保存", "Save as a new version") });
  const status = h("div", { class: "muted", testid: "slice-status" });
  const view = { envelope: [], duration: 0, cuts: [], dropped: [], selected: -1, cursor: null, drag: null };

  const xOf = (t) => (t / view.duration) * canvas.width;
  const tOf = (x) => Math.max(0, Math.min(view.duration, (x / canvas.width) * view.duration));
  const canvasX = (ev) => {
    const box = canvas.getBoundingClientRect();
    return ((ev.clientX - box.left) / box.width) * canvas.width;
  };

  function draw() {
    canvas.width = Math.max(300, Math.round(canvas.getBoundingClientRect().width || 900));
    const g = canvas.getContext("2d");
    const mid = HEIGHT / 2;
    g.clearRect(0, 0, canvas.width, HEIGHT);
    for (const [a, b] of view.dropped) {
      g.fillStyle = "rgba(200, 60, 60, 0.15)";
      g.fillRect(xOf(a), 0, xOf(b) - xOf(a), HEIGHT);
    }
    view.cuts.forEach(([a, b], i) => {
      g.fillStyle = i === view.selected ? "rgba(40, 120, 220, 0.35)" : "rgba(40, 160, 90, 0.22)";
      g.fillRect(xOf(a), 0, xOf(b) - xOf(a), HEIGHT);
      g.fillStyle = "#1b5e20";
      g.fillRect(xOf(a) - 1, 0, 2, HEIGHT);
      g.fillRect(xOf(b) - 1, 0, 2, HEIGHT);
    });
    g.fillStyle = "#444";
    const n = view.envelope.length;
    view.envelope.forEach(([lo, hi], i) => {
      const x = (i / n) * canvas.width;
      g.fillRect(x, mid - hi * mid, Math.max(1, canvas.width / n), Math.max(1, (hi - lo) * mid));
    });
    if (view.cursor != null) {
      g.fillStyle = "#d32f2f";
      g.fillRect(xOf(view.cursor), 0, 1, HEIGHT);
    }
  }

  function renderList() {
    clear(list);
    view.cuts.forEach(([a, b], i) => {
      const item = h("li", { testid: "slice-item", class: i === view.selected ? "selected" : "" },
        `${a.toFixed(2)} – ${b.toFixed(2)} s (${(b - a).toFixed(2)} s)`);
      item.dataset.start = String(a);
      item.dataset.end = String(b);
      item.addEventListener("click", () => select(i));
      list.append(item);
    });
    const dropped = view.dropped.length;
    setBilingual(status, dropped ? `短すぎて除外される発話: ${dropped}` : "", dropped ? `utterances too short, left out: ${dropped}` : "");
  }

  function refreshView() {
    draw();
    renderList();
  }

  function select(i) {
    view.selected = i;
    refreshView();
  }

  // the edge under the pointer, as [cut index, 0 (start) | 1 (end)]
  function edgeAt(x) {
    let best = null;
    view.cuts.forEach(([a, b], i) => {
      for (const [side, t] of [[0, a], [1, b]]) {
        const d = Math.abs(xOf(t) - x);
        if (d <= GRAB_PX && (!best || d < best.d)) best = { i, side, d };
      }
    });
    return best;
  }

  canvas.addEventListener("pointerdown", (ev) => {
    const x = canvasX(ev);
    const edge = edgeAt(x);
    if (edge) {
      view.drag = edge;
      canvas.setPointerCapture(ev.pointerId);
      return;
    }
    const t = tOf(x);
    view.cursor = t;
    view.selected = view.cuts.findIndex(([a, b]) => a <= t && t <= b);
    refreshView();
  });
  canvas.addEventListener("pointermove", (ev) => {
    const x = canvasX(ev);
    if (!view.drag) {
      canvas.style.cursor = edgeAt(x) ? "col-resize" : "crosshair";
      return;
    }
    const { i, side } = view.drag;
    const cut = view.cuts[i];
    // an edge moves between its neighbours: cuts never overlap and never turn inside out
    const low = side === 0 ? (i > 0 ? view.cuts[i - 1][1] : 0) : cut[0] + 0.05;
    const high = side === 0 ? cut[1] - 0.05 : (i < view.cuts.length - 1 ? view.cuts[i + 1][0] : view.duration);
    cut[side] = Math.round(Math.max(low, Math.min(high, tOf(x))) * 1000) / 1000;
    refreshView();
  });
  const endDrag = () => {
    view.drag = null;
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);

  split.addEventListener("click", () => {
    const cut = view.cuts[view.selected];
    if (!cut || view.cursor == null || view.cursor <= cut[0] || view.cursor >= cut[1]) {
      setBilingual(status, "分割する区間の中をクリックしてから押してください。", "Click inside a cut first, then split.");
      return;
    }
    const t = Math.round(view.cursor * 1000) / 1000;
    view.cuts.splice(view.selected, 1, [cut[0], t], [t, cut[1]]);
    refreshView();
  });
  merge.addEventListener("click", () => {
    const i = view.selected;
    if (i < 0 || i >= view.cuts.length - 1) {
      setBilingual(status, "結合する区間（最後以外）を選んでください。", "Select a cut that has a next one.");
      return;
    }
    view.cuts.splice(i, 2, [view.cuts[i][0], view.cuts[i + 1][1]]);
    refreshView();
  });
  remove.addEventListener("click", () => {
    if (view.selected < 0) return;
    view.cuts.splice(view.selected, 1);
    view.selected = -1;
    refreshView();
  });

  async function propose() {
    const body = { dataset: dataset.value, recording: recording.value || null, points: 1200 };
    for (const [key, input] of Object.entries(settings)) body[key] = Number(input.value);
    const shown = await post("/api/audio/slices/preview", body);
    if (!recording.options.length || [...recording.options].map((o) => o.value).join("|") !== shown.recordings.join("|")) {
      clear(recording);
      for (const r of shown.recordings) recording.append(h("option", { value: r }, r));
    }
    recording.value = shown.recording;
    Object.assign(view, { envelope: shown.envelope, duration: shown.duration, cuts: shown.cuts,
      dropped: shown.dropped, selected: -1, cursor: null });
    output.value = output.value || `${dataset.value}-clips`;
    refreshView();
  }
  detect.addEventListener("click", () => withBusy(detect, propose));
  dataset.addEventListener("change", () => {
    clear(recording);
    output.value = "";
    withBusy(detect, propose).catch(showError);
  });
  recording.addEventListener("change", () => withBusy(detect, propose).catch(showError));

  save.addEventListener("click", () => withBusy(save, async () => {
    const params = { cuts: { [recording.value]: view.cuts.map(([a, b]) => [a, b]) } };
    for (const [key, input] of Object.entries(settings)) params[key] = Number(input.value);
    const job = await post("/api/datasets/refine", { modality: M, dataset: dataset.value,
      output_name: output.value || `${dataset.value}-clips`, operations: [{ op: "slice", params }] });
    setBilingual(status, `ジョブ ${job.job_id} で保存中…`, `Saving in job ${job.job_id}…`);
    status.dataset.status = "running";
    watchJob(job.job_id, { onEnd: async () => {
      const done = await get(`/api/jobs/${encodeURIComponent(job.job_id)}`).catch(() => ({}));
      const ok = done.status === "completed";
      setBilingual(status, ok ? `保存しました: ${output.value}` : `失敗: ${(done.error || {}).message_ja || done.status}`,
        ok ? `Saved: ${output.value}` : `Failed: ${(done.error || {}).message || done.status}`);
      status.dataset.status = done.status || "";
    } });
  }));

  async function refresh() {
    const names = ((await get(`/api/datasets?modality=${M}`)).datasets || []).map((d) => d.name);
    const keep = dataset.value;
    clear(dataset);
    for (const name of names) dataset.append(h("option", { value: name }, name));
    if (names.includes(keep)) dataset.value = keep;
  }

  const el = h("section", { class: "card voice-section", testid: "voice-slice-review" },
    h("h2", bi("分割の確認", "Slice review")),
    h("p", { class: "muted", ...bi("境界をドラッグして調整し、区間をクリックして選び、分割・結合・削除してから保存します。",
      "Drag an edge to move a cut; click a cut to select it, then split, merge or delete; save as a new version.") }),
    h("div", { class: "row" }, field("データセット", "Dataset", dataset), field("録音", "Recording", recording)),
    h("div", { class: "row" }, field("最短秒", "Min seconds", settings.min_seconds), field("最長秒", "Max seconds", settings.max_seconds),
      field("無音の最短 (ms)", "Min silence (ms)", settings.min_silence_ms), field("前後の余白 (ms)", "Padding (ms)", settings.pad_ms), detect),
    canvas, h("div", { class: "row" }, split, merge, remove), list,
    h("div", { class: "row" }, field("新しい版の名前", "New version name", output), save), status);
  return { el, refresh };
}
