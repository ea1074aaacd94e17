// The image view of the 推論 tab (registered for the inference kind "image"):
// txt2img / img2img / inpaint with the base and several LoRAs (a weight each), seed, steps,
// CFG, size, sampler, negative prompt; VAE, ControlNet (canny / depth from an uploaded picture),
// IP-Adapter (reference picture), SDXL refiner; presets. Results in a gallery with their settings;
// dropping a PNG (ours or A1111's) restores the settings; compare base vs adapter with one seed; a
// grid over LoRA weights; the last results are remembered in this browser (history).
import { post } from "/static/js/api.js";
import { registerView } from "/static/js/views/registry.js";
import { h, notify, select, setOptions, showError, withBusy } from "/static/js/dom.js";
import { listAdapters, listModels, refOf } from "/static/js/lists.js";
import { bi, biButton, biField, ensureStyles, listModelsOfKind, settingsFromPng, settingsLine, uploadInput } from "./common.js";

const HISTORY_KEY = "lora_factory.image.history";
const SCHEDULERS = ["", "euler_a", "euler", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc", "heun", "lms", "pndm", "lcm", "flow_euler"];

function number(attrs) {
  return h("input", { type: "number", ...attrs });
}

function loadHistory() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
  } catch {
    return [];
  }
}

export function mountImageView(panel, app) {
  ensureStyles();
  const m = app.modality;
  const info = app.info();
  const schema = ((info.infer_schemas || {}).image || {});
  const presets = schema.presets || {};

  const baseSel = select([], { testid: "gen-base-model" });
  const adapterRows = h("div", { class: "img-adapters", testid: "gen-adapters" });
  const addAdapter = biButton("+ LoRA を追加", "+ Add a LoRA", { class: "small", testid: "gen-add-adapter" });
  const prompt = h("textarea", { rows: 3, testid: "gen-prompt" });
  const negative = h("textarea", { rows: 2, testid: "gen-negative" });
  const seed = number({ value: -1, min: -1, testid: "gen-seed" });
  const steps = number({ min: 1, max: 200, placeholder: "auto", testid: "gen-steps" });
  const cfg = number({ min: 0, max: 50, step: "0.5", placeholder: "auto", testid: "gen-cfg" });
  const width = number({ min: 16, max: 4096, step: 8, placeholder: "auto", testid: "gen-width" });
  const height = number({ min: 16, max: 4096, step: 8, placeholder: "auto", testid: "gen-height" });
  const count = number({ min: 1, max: 16, value: 1, testid: "gen-count" });
  const clipSkip = number({ min: 1, max: 12, step: 1, placeholder: "1", testid: "gen-clip-skip" });
  const scheduler = select(SCHEDULERS.map((s) => ({ value: s, label: s || "auto" })), { testid: "gen-scheduler" });
  const strength = number({ min: 0.05, max: 1, step: "0.05", value: 0.6, testid: "gen-strength" });
  const presetSel = select([{ value: "", label: "-" }, ...Object.keys(presets).map((p) => ({ value: p, label: p }))], { testid: "gen-preset" });
  const vaeSel = select([], { testid: "gen-vae" });
  const refinerSel = select([], { testid: "gen-refiner" });
  const controlSel = select([], { testid: "gen-controlnet" });
  const controlPre = select([{ value: "canny", label: "canny" }, { value: "depth", label: "depth" }, { value: "none", label: "none" }], { testid: "gen-controlnet-pre" });
  const ipSel = select([], { testid: "gen-ip-adapter" });
  const files = {};
  const fileField = (key, ja, en) => {
    files[key] = h("input", { type: "file", accept: "image/*", testid: `gen-${key.replace("_", "-")}` });
    return biField(ja, en, files[key]);
  };
  const grid = h("input", { type: "text", placeholder: "0, 0.5, 1", testid: "gen-weight-grid" });
  // the first LoRA's epoch files (<name>-00000N.safetensors, save_every_n_epochs); 0 = the final file
  const epochGrid = h("input", { type: "text", placeholder: "1, 2, 0", testid: "gen-epoch-grid" });
  const run = biButton("生成", "Generate", { class: "primary", testid: "gen-run" });
  const compare = biButton("ベースと比較 (同じシード)", "Compare with the base (same seed)", { testid: "gen-compare" });
  const gridBtn = biButton("グリッド (重み・エポック)", "Grid (weights, epochs)", { testid: "gen-grid" });
  const pngDrop = h("div", { class: "dropzone small", testid: "gen-png-drop", tabindex: "0" },
    bi("PNG をここへドロップすると設定を復元します(LoRA Factory / A1111 の PNG)", "Drop a PNG here to restore its settings (LoRA Factory or A1111)", "p"),
    h("input", { type: "file", accept: "image/png", class: "file-input", testid: "gen-png-input" }));
  const results = h("div", { class: "img-gallery", testid: "gen-results" });
  const history = h("div", { class: "img-gallery small", testid: "gen-history" });

  panel.append(
    h("div", { class: "card form-grid" },
      biField("ベースモデル", "Base model", baseSel),
      biField("プリセット", "Preset", presetSel),
      h("div", { class: "full" }, bi("LoRA(重みつき、複数可)", "LoRAs (with weights, several allowed)", "strong"), adapterRows, addAdapter),
      h("div", { class: "full" }, biField("プロンプト", "Prompt", prompt)),
      h("div", { class: "full" }, biField("ネガティブプロンプト", "Negative prompt", negative)),
      biField("シード (-1 = ランダム)", "Seed (-1 = random)", seed), biField("ステップ数", "Steps", steps),
      biField("CFG スケール", "CFG scale", cfg), biField("サンプラー", "Sampler", scheduler),
      biField("幅", "Width", width), biField("高さ", "Height", height), biField("枚数", "Images", count),
      biField("Clip skip (2 = アニメ系 SD1.5 の定番)", "Clip skip (2 = the anime SD1.5 norm)", clipSkip),
      h("details", { class: "full", testid: "gen-advanced" }, bi("img2img・inpaint・ControlNet・IP-Adapter・VAE・リファイナー", "img2img, inpaint, ControlNet, IP-Adapter, VAE, refiner", "summary"),
        h("div", { class: "form-grid" },
          fileField("image", "元画像 (img2img / inpaint)", "Init image (img2img / inpaint)"),
          fileField("mask", "マスク (白 = 描き直す)", "Mask (white = repaint)"),
          biField("ノイズ除去強度", "Denoising strength", strength),
          biField("VAE", "VAE", vaeSel), biField("リファイナー (SDXL)", "Refiner (SDXL)", refinerSel),
          biField("ControlNet", "ControlNet", controlSel), biField("ControlNet の前処理", "ControlNet preprocessor", controlPre),
          fileField("control_image", "ControlNet 画像", "ControlNet image"),
          biField("IP-Adapter", "IP-Adapter", ipSel), fileField("reference_image", "IP-Adapter 参照画像", "IP-Adapter reference"),
          biField("LoRA 重みのグリッド", "LoRA weight grid", grid),
          biField("エポックのグリッド (最初の LoRA、0 = 最終)", "Epoch grid (first LoRA, 0 = final)", epochGrid))),
      h("div", { class: "row full" }, run, compare, gridBtn),
      h("div", { class: "full" }, pngDrop)),
    h("div", { class: "card" }, bi("結果", "Results", "h3"), results),
    h("div", { class: "card" }, bi("履歴(このブラウザ)", "History (this browser)", "h3"), history),
  );

  let adapters = [];
  let allAdapters = [];
  let baseModels = [];
  // only the LoRAs trained for the chosen base's architecture (or of unknown architecture) are offered
  function compatibleAdapters() {
    const base = baseModels.find((x) => refOf(x) === baseSel.value);
    const arch = base && base.architecture;
    return allAdapters.filter((a) => !arch || !a.architecture || a.architecture === arch);
  }
  function adapterRow(name = "", weight = 1) {
    const sel = select([{ value: "", label: "-" }, ...adapters.map((a) => ({ value: a.name, label: a.name }))], { testid: "gen-adapter" });
    sel.value = name;
    const w = number({ min: -4, max: 4, step: "0.05", value: weight, testid: "gen-adapter-weight" });
    const remove = biButton("削除", "Remove", { class: "small" });
    const row = h("div", { class: "row", testid: "gen-adapter-row" }, sel, w, remove);
    remove.addEventListener("click", () => row.remove());
    adapterRows.append(row);
    return row;
  }
  addAdapter.addEventListener("click", () => adapterRow());
  baseSel.addEventListener("change", () => {
    adapters = compatibleAdapters();
    for (const row of adapterRows.querySelectorAll("select")) {
      const v = row.value;
      setOptions(row, [{ value: "", label: "-" }, ...adapters.map((a) => ({ value: a.name, label: a.name }))]);
      row.value = adapters.some((a) => a.name === v) ? v : "";
    }
  });

  function chosenAdapters() {
    return [...adapterRows.querySelectorAll("[data-testid='gen-adapter-row']")]
      .map((row) => ({ name: row.querySelector("select").value, weight: Number(row.querySelector("input").value || 1) }))
      .filter((a) => a.name);
  }

  presetSel.addEventListener("change", () => {
    const p = presets[presetSel.value] || {};
    if (p.steps) steps.value = p.steps;
    if (p.scheduler) scheduler.value = p.scheduler;
  });

  const num = (el) => (el.value === "" ? undefined : Number(el.value));
  async function request(extra = {}) {
    const params = { seed: num(seed), steps: num(steps), guidance_scale: num(cfg), width: num(width), height: num(height),
      num_images: num(count) || 1, clip_skip: num(clipSkip) > 1 ? num(clipSkip) : undefined, scheduler: scheduler.value || undefined, negative_prompt: negative.value, ...extra };
    const input = { prompt: prompt.value };
    for (const [key, el] of Object.entries(files)) if (el.files && el.files[0]) input[key] = await uploadInput(el.files[0]);
    if (input.image) params.strength = num(strength);
    if (vaeSel.value) params.vae = vaeSel.value;
    if (refinerSel.value) params.refiner = { model: refinerSel.value };
    if (controlSel.value) params.controlnet = { model: controlSel.value, preprocessor: controlPre.value };
    if (ipSel.value) params.ip_adapter = { model: ipSel.value };
    for (const k of Object.keys(params)) if (params[k] === undefined || Number.isNaN(params[k])) delete params[k];
    return { modality: m, task: "image", base_model: baseSel.value, adapters: chosenAdapters(), input, params };
  }

  function card(media, label) {
    const meta = media.meta || {};
    const restore = biButton("この設定を使う", "Use these settings", { class: "small", testid: "gen-restore" });
    restore.addEventListener("click", () => apply(meta));
    return h("figure", { class: "img-card", testid: "gen-result" },
      label ? h("strong", { text: label }) : null,
      h("a", { href: media.url, target: "_blank", rel: "noopener" }, h("img", { src: media.url, alt: meta.prompt || "", class: "img-thumb", testid: "gen-image" })),
      h("figcaption", {}, h("span", { class: "mono small-text", testid: "gen-settings", text: settingsLine(meta) }), restore));
  }

  function remember(media) {
    const items = [{ url: media.url, meta: media.meta }, ...loadHistory()].slice(0, 24);
    try {
      localStorage.setItem(HISTORY_KEY, JSON.stringify(items));
    } catch {
      // not remembered
    }
    renderHistory();
  }

  function renderHistory() {
    history.replaceChildren(...loadHistory().map((item) => card(item, null)));
  }

  async function generate(extra = {}) {
    const body = await request(extra);
    const done = await post("/api/infer/generate", body);
    results.replaceChildren(...(done.media || []).map((media) => card(media, gridLabel(media.meta || {}))));
    for (const media of done.media || []) remember(media);
    return done;
  }

  // "epoch 2 · weight 0.5" under a grid cell (nothing for a plain image)
  function gridLabel(meta) {
    const parts = [];
    if (meta.epoch != null) parts.push(meta.epoch === 0 ? "final" : `epoch ${meta.epoch}`);
    if (meta.lora_weight != null) parts.push(`weight ${meta.lora_weight}`);
    return parts.length ? parts.join(" · ") : null;
  }
  const numbers = (text) => text.split(",").map((s) => s.trim()).filter(Boolean).map(Number).filter((x) => !Number.isNaN(x));

  run.addEventListener("click", () => withBusy(run, () => generate()));
  gridBtn.addEventListener("click", () => withBusy(gridBtn, () => {
    const epochs = numbers(epochGrid.value).map((x) => Math.round(x)).filter((x) => x >= 0);
    const weights = numbers(grid.value || (epochs.length ? "" : "0, 0.5, 1"));
    return generate({ lora_weight_grid: weights, epoch_grid: epochs });
  }));
  compare.addEventListener("click", () => withBusy(compare, async () => {
    const body = { ...(await request()), compare: true };
    const both = await post("/api/infer/generate", body);
    const pair = (label, done) => (done.media || []).map((media) => card(media, label));
    results.replaceChildren(h("div", { class: "img-compare", testid: "gen-compare-result" },
      h("div", {}, ...pair("base", both.base)), h("div", {}, ...pair("LoRA", both.adapter))));
  }));

  function apply(settings) {
    if (settings.prompt !== undefined) prompt.value = settings.prompt;
    if (settings.negative_prompt !== undefined) negative.value = settings.negative_prompt || "";
    if (settings.seed !== undefined) seed.value = settings.seed;
    if (settings.steps) steps.value = settings.steps;
    if (settings.guidance_scale !== undefined) cfg.value = settings.guidance_scale;
    if (settings.width) width.value = settings.width;
    if (settings.height) height.value = settings.height;
    if (settings.scheduler && SCHEDULERS.includes(settings.scheduler)) scheduler.value = settings.scheduler;
    if (settings.strength) strength.value = settings.strength;
    if (settings.clip_skip !== undefined) clipSkip.value = settings.clip_skip && settings.clip_skip > 1 ? settings.clip_skip : "";
    const base = [...baseSel.options].find((o) => o.value === settings.base_model || o.textContent.startsWith(settings.base_model_name || "\u0000"));
    if (base) baseSel.value = base.value;
    if (Array.isArray(settings.adapters)) {
      adapterRows.replaceChildren();
      for (const a of settings.adapters) adapterRow(a.name, a.weight ?? 1);
    }
  }

  async function restoreFrom(file) {
    const { source, settings } = await settingsFromPng(file);
    if (!source) {
      notify("error", "この PNG には生成設定がありません", "This PNG carries no generation settings");
      return;
    }
    apply(settings);
    pngDrop.dataset.restored = source;
    notify("success", `設定を復元しました(${source})`, `Settings restored (${source})`);
  }
  pngDrop.querySelector("input").addEventListener("change", (ev) => ev.target.files[0] && restoreFrom(ev.target.files[0]).catch(showError));
  for (const type of ["dragenter", "dragover"]) pngDrop.addEventListener(type, (ev) => { ev.preventDefault(); pngDrop.classList.add("is-over"); });
  for (const type of ["dragleave", "drop"]) pngDrop.addEventListener(type, () => pngDrop.classList.remove("is-over"));
  pngDrop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const file = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (file) restoreFrom(file).catch(showError);
  });

  async function refresh() {
    const [models, list, vaes, refiners, controlnets, ips] = await Promise.all([
      listModels(m), listAdapters(m), listModelsOfKind(m, "vae"), listModelsOfKind(m, "refiner"),
      listModelsOfKind(m, "controlnet"), listModelsOfKind(m, "ip_adapter")]);
    baseModels = models;
    const keep = baseSel.value;
    // a placeholder as in the other tabs: an empty list says "choose a model", not nothing
    setOptions(baseSel, [{ value: "", i18n: "common.choose_model" }, ...models.map((x) => ({ value: refOf(x), label: `${x.name}${x.architecture ? ` (${x.architecture})` : ""}` }))]);
    if (keep) baseSel.value = keep;
    else if (models.length) baseSel.value = refOf(models[0]);
    allAdapters = list;
    adapters = compatibleAdapters();
    for (const row of adapterRows.querySelectorAll("select")) {
      const v = row.value;
      setOptions(row, [{ value: "", label: "-" }, ...adapters.map((a) => ({ value: a.name, label: a.name }))]);
      row.value = v;
    }
    const fill = (el, items) => {
      const v = el.value;
      setOptions(el, [{ value: "", label: "-" }, ...items.map((x) => ({ value: x.name, label: x.name }))]);
      el.value = v;
    };
    fill(vaeSel, vaes);
    fill(refinerSel, refiners);
    fill(controlSel, controlnets);
    fill(ipSel, ips);
    if (!adapterRows.children.length) adapterRow();
    renderHistory();
  }

  return { onShow: () => refresh().catch(showError), apply };
}

registerView("image", mountImageView, "image");
