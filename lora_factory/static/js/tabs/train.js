// 学習: base model, dataset, output name, preset, advanced parameters (JSON, or a form generated
// from the plugin's train_params_schema that writes into the JSON); start, live progress, cancel.
import { ApiError, get, post } from "../api.js";
import { defaultName, field, h, kvTable, select, setOptions, withBusy } from "../dom.js";
import { createJobView } from "../jobview.js";
import { fillDatasetSelect, fillModelSelect, listDatasets, listModels } from "../lists.js";
import { schemaForm } from "../schema_form.js";

/**
 * The device picker's choices (GET /api/devices): the server's default, a count (0: on the CPU), or
 * one named device. Values are JSON, sent as the request's "devices" ("" leaves the default).
 */
export function deviceOptions(devices) {
  const out = [{ value: "", bi: { ja: "既定", en: "Default" } }];
  for (let n = 0; n <= devices.length; n++) {
    out.push({ value: String(n), bi: n === 0 ? { ja: "0(CPU で実行)", en: "0 (on the CPU)" } : { ja: `${n} 台`, en: n === 1 ? "1 device" : `${n} devices` } });
  }
  for (const d of devices) out.push({ value: JSON.stringify([d.id]), bi: { ja: `${d.id} のみ(${d.name})`, en: `only ${d.id} (${d.name})` } });
  return out;
}

/** Presets may be declared as {name: params} or as [{name, label_ja, label_en, params}]. */
export function presetEntries(info) {
  const presets = (info && info.presets) || {};
  if (Array.isArray(presets)) return presets.map((p) => [p.name || p.id, p.params || p, p]);
  return Object.entries(presets).map(([name, params]) => [name, params && params.params ? params.params : params, params || {}]);
}

/** Training methods the modality declares (text: sft, dpo, kto, orpo, simpo, grpo); [] when it has none. */
export function methodOptions(info) {
  return ((info && info.training_methods) || []).map((m) => ({ value: m.id, bi: { ja: m.label_ja || m.id, en: m.label_en || m.id } }));
}

export function presetOptions(info) {
  return presetEntries(info).map(([name, , meta]) => ({
    value: name,
    bi: { ja: meta.label_ja ? `${meta.label_ja} (${name})` : name, en: meta.label_en ? `${meta.label_en} (${name})` : name },
  }));
}

function parseParams(text) {
  if (!text.trim()) return {};
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) return value;
  } catch (err) {
    throw new ApiError(400, {
      error: {
        code: "PARAMS_INVALID_JSON",
        message: `The advanced parameters are not valid JSON: ${err.message}`,
        message_ja: `詳細パラメータが正しい JSON ではありません: ${err.message}`,
        detail: { field: "params" },
      },
    });
  }
  throw new ApiError(400, {
    error: { code: "PARAMS_NOT_OBJECT", message: "The advanced parameters must be a JSON object ({...}).", message_ja: "詳細パラメータは JSON オブジェクト({...})で指定してください。", detail: { field: "params" } },
  });
}

export function mount(panel, app) {
  const m = app.modality;
  const info = app.info();
  const baseSel = select([], { testid: "train-base-model", name: "base_model" });
  const dataSel = select([], { testid: "train-dataset", name: "dataset" });
  const outName = h("input", { type: "text", testid: "train-output-name", name: "output_name", value: defaultName("lora"), autocomplete: "off", required: true });
  const presetSel = select(presetOptions(info), { testid: "train-preset", name: "preset" });
  if (info.default_preset) presetSel.value = info.default_preset;
  const methods = methodOptions(info);
  const methodSel = select(methods, { testid: "train-method", name: "method" });
  const devicesSel = select(deviceOptions([]), { testid: "train-devices", name: "devices" });
  const devicesField = field("train.devices", devicesSel, "train.devices_hint");
  devicesField.hidden = true; // shown once the server says it has devices
  const presetView = h("div", { class: "preset-view", testid: "train-preset-params" });
  const paramsText = h("textarea", { rows: 4, class: "mono", testid: "train-params", name: "params", spellcheck: "false", placeholder: '{"num_epochs": 3, "learning_rate": 0.0002}' });
  const startBtn = h("button", { type: "submit", class: "primary", i18n: "train.start", testid: "train-start" });

  const form = schemaForm(info.train_params_schema, {
    idPrefix: "train-param",
    onChange: () => {
      let current = {};
      try {
        current = parseParams(paramsText.value);
      } catch {
        current = {};
      }
      paramsText.value = JSON.stringify({ ...current, ...form.changed() }, null, 1);
    },
  });

  const jobView = createJobView({ prefix: "", cancellable: true, cancelTestid: "train-cancel", cancelPath: (id) => `/train/cancel/${encodeURIComponent(id)}` });

  const showPreset = () => {
    const entry = presetEntries(info).find(([name]) => name === presetSel.value);
    presetView.replaceChildren(entry ? kvTable(entry[1]) : h("span", { class: "muted", i18n: "train.no_preset" }));
    // The form starts from the preset's values, so what it shows is what would run.
    if (entry) form.reset(entry[1]);
    // a method's own preset (dpo, grpo ...) selects its method; a general preset keeps the chosen one
    const presetMethod = entry && entry[1].method;
    if (presetMethod && presetMethod !== "sft" && methods.some((o) => o.value === presetMethod)) methodSel.value = presetMethod;
  };
  presetSel.addEventListener("change", showPreset);
  showPreset();

  const formEl = h(
    "form",
    { class: "card form-grid", testid: "train-form", novalidate: true },
    field("train.base_model", baseSel),
    field("train.dataset", dataSel),
    field("train.output_name", outName, "train.output_hint"),
    field("train.preset", presetSel),
    methods.length ? field("train.method", methodSel, "train.method_hint") : null,
    devicesField,
    h("details", { class: "full" }, h("summary", { i18n: "train.preset_params" }), presetView),
    h(
      "details",
      { class: "full", testid: "train-advanced" },
      h("summary", { i18n: "train.advanced" }),
      field("train.params_json", paramsText, "train.params_hint"),
      form.empty ? null : h("div", {}, h("h4", { i18n: "train.params_form" }), form.root),
    ),
    h("div", { class: "row full" }, startBtn),
  );

  panel.append(h("h2", { i18n: "tab.train" }), formEl, jobView.root);

  formEl.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(startBtn, async () => {
      const params = parseParams(paramsText.value);
      // the method select decides unless the advanced JSON names one
      if (methods.length && params.method === undefined) params.method = methodSel.value;
      const body = {
        modality: m,
        base_model: baseSel.value,
        dataset: dataSel.value,
        output_name: outName.value.trim(),
        preset: presetSel.value || undefined,
        params,
      };
      if (devicesSel.value !== "") body.devices = JSON.parse(devicesSel.value);
      const { job_id: jobId } = await post("/train/start", body);
      jobView.follow(jobId);
      outName.value = defaultName("lora");
    });
  });

  async function refresh() {
    const [models, datasets, devices] = await Promise.all([listModels(m), listDatasets(m), get("/api/devices").catch(() => ({ devices: [] }))]);
    fillModelSelect(baseSel, models);
    fillDatasetSelect(dataSel, datasets);
    setOptions(devicesSel, deviceOptions(devices.devices || []));
    devicesField.hidden = !(devices.devices || []).length;
  }

  return {
    onShow: refresh,
    follow: (jobId) => jobView.follow(jobId),
  };
}
