// 学習: base model, dataset, output name, preset, advanced parameters; start, live progress, cancel.
// One model behind the advanced parameters: `overrides` (what differs from the preset) is what the
// JSON box shows and what is sent; the generated form shows preset + overrides. Either side edits
// the model and the other follows. Before starting: the estimate (steps, time, memory, from the
// server), the equivalent command (「コマンドを表示」), saved settings and a past job's settings.
import { ApiError, get, post } from "../api.js";
import { defaultName, field, h, select, setBilingual, setI18n, setOptions, withBusy } from "../dom.js";
import { getLang } from "../i18n.js";
import { createJobView } from "../jobview.js";
import { fillDatasetSelect, fillModelSelect, listDatasets, listModels } from "../lists.js";
import { paramTitle, schemaForm } from "../schema_form.js";
import { createCommandBox } from "../train/command_box.js";
import { createEstimateBox } from "../train/estimate_box.js";
import { createNextSteps } from "../train/next_steps.js";
import { createRewardsBox } from "../train/rewards_box.js";
import { createSavedSettings } from "../train/saved_settings.js";

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
  const described = (info && info.preset_info) || {};
  return Object.entries(presets).map(([name, params]) => [name, params && params.params ? params.params : params, { ...(params || {}), ...(described[name] || {}) }]);
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

/** A preset's description in both languages ({ja, en}), or null. */
export function presetDescription(info, name) {
  const entry = presetEntries(info).find(([n]) => n === name);
  const meta = entry ? entry[2] : {};
  return meta.description_ja || meta.description_en ? { ja: meta.description_ja || meta.description_en, en: meta.description_en || meta.description_ja } : null;
}

export const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export function parseParams(text) {
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

/** The preset's parameters as a table labelled with the form's own (translated) labels. */
export function presetTable(info, params) {
  const schema = info.train_params_schema || {};
  const table = h("table", { class: "kv", testid: "train-preset-table" });
  const body = h("tbody");
  for (const [key, value] of Object.entries(params || {})) {
    const shown = value === null || value === undefined || (Array.isArray(value) && !value.length) ? "-" : typeof value === "object" ? JSON.stringify(value) : String(value);
    const th = h("th", { scope: "row", "data-key": key, title: key });
    setBilingual(th, paramTitle(schema, key, "ja"), paramTitle(schema, key, "en"));
    body.append(h("tr", {}, th, h("td", { class: "mono", text: shown })));
  }
  table.append(body);
  return table;
}

/** Which of epochs / max_steps decides the length of the run, in words (null when the schema has not both). */
export function stepsRule(params) {
  if (!params || !("max_steps" in params) || !("num_epochs" in params)) return null;
  if (Number(params.max_steps) > 0) return ["train.steps_rule_max", { max_steps: params.max_steps, epochs: params.num_epochs }];
  return ["train.steps_rule_epochs", { epochs: params.num_epochs }];
}

export function mount(panel, app) {
  const m = app.modality;
  const info = app.info();
  const baseSel = select([], { testid: "train-base-model", name: "base_model" });
  const dataSel = select([], { testid: "train-dataset", name: "dataset" });
  const outName = h("input", { type: "text", testid: "train-output-name", name: "output_name", value: defaultName("lora"), autocomplete: "off", required: true });
  const presetSel = select(presetOptions(info), { testid: "train-preset", name: "preset" });
  if (info.default_preset) presetSel.value = info.default_preset;
  const presetDesc = h("small", { class: "hint", testid: "train-preset-description" });
  const methods = methodOptions(info);
  const methodSel = select(methods, { testid: "train-method", name: "method" });
  const rewardsBox = createRewardsBox(m);
  const devicesSel = select(deviceOptions([]), { testid: "train-devices", name: "devices" });
  const devicesField = field("train.devices", devicesSel, "train.devices_hint");
  devicesField.hidden = true; // shown once the server says it has devices
  const presetView = h("div", { class: "preset-view", testid: "train-preset-params" });
  const paramsText = h("textarea", { rows: 4, class: "mono", testid: "train-params", name: "params", spellcheck: "false", placeholder: '{"num_epochs": 3, "learning_rate": 0.0002}' });
  const paramsError = h("small", { class: "field-error", testid: "train-params-error", role: "alert", hidden: true });
  const rule = h("p", { class: "hint steps-rule", testid: "train-steps-rule", hidden: true });
  const startBtn = h("button", { type: "submit", class: "primary", i18n: "train.start", testid: "train-start" });

  // -- the one model: the preset's values and the user's overrides ------------------------------
  const state = { overrides: {}, baseline: {}, jsonValid: true };
  const presetParams = () => {
    const entry = presetEntries(info).find(([name]) => name === presetSel.value);
    return entry ? entry[1] || {} : {};
  };
  const effective = () => ({ ...presetParams(), ...state.overrides });
  // every field's schema default, so a preset that names fewer keys leaves no stale value in the form
  const schemaProps = (info.train_params_schema && info.train_params_schema.properties) || {};
  const defaults = () => Object.fromEntries(Object.entries(schemaProps).map(([k, p]) => [k, p.default]));

  const form = schemaForm(info.train_params_schema, { idPrefix: "train-param", onChange: () => fromForm() });

  function show(source) {
    if (source !== "form") form.reset({ ...defaults(), ...effective() });
    if (source !== "json") {
      paramsText.value = Object.keys(state.overrides).length ? JSON.stringify(state.overrides, null, 1) : "";
      setJsonValid(true);
    }
    if (methods.length && source !== "method") methodSel.value = effective().method || methods[0].value;
    rewardsBox.show(methodSel.value, info.training_methods);
    const said = stepsRule(effective());
    rule.hidden = !said;
    if (said) setI18n(rule, said[0], said[1]);
    changed();
  }

  function setJsonValid(ok, message) {
    state.jsonValid = ok;
    paramsText.setAttribute("aria-invalid", String(!ok));
    paramsError.hidden = ok;
    if (!ok) setBilingual(paramsError, `JSON として読めません(フォームには反映されていません): ${message}`, `Not valid JSON (the form was not updated): ${message}`);
  }

  function fromForm() {
    const values = form.values();
    for (const [name, value] of Object.entries(values)) {
      if (same(value, state.baseline[name])) delete state.overrides[name];
      else state.overrides[name] = value;
    }
    show("form");
  }

  paramsText.addEventListener("input", () => {
    let parsed;
    try {
      parsed = parseParams(paramsText.value);
    } catch (err) {
      setJsonValid(false, getLang() === "ja" ? err.message_ja : err.message);
      return;
    }
    setJsonValid(true);
    // the method select's choice stays unless the JSON names a method itself
    const keepMethod = methods.length && !("method" in parsed) && state.overrides.method !== undefined ? { method: state.overrides.method } : {};
    state.overrides = { ...parsed, ...keepMethod };
    show("json");
  });
  // leaving the box shows the model as it is now (with the kept method), formatted
  paramsText.addEventListener("change", () => state.jsonValid && show());

  methodSel.addEventListener("change", () => {
    if (same(methodSel.value, presetParams().method ?? methods[0].value)) delete state.overrides.method;
    else state.overrides.method = methodSel.value;
    show("method");
  });

  function showPreset() {
    presetView.replaceChildren(Object.keys(presetParams()).length ? presetTable(info, presetParams()) : h("span", { class: "muted", i18n: "train.no_preset" }));
    const desc = presetDescription(info, presetSel.value);
    presetDesc.hidden = !desc;
    if (desc) setBilingual(presetDesc, desc.ja, desc.en);
    // the baseline the overrides are measured against: the form as the preset alone fills it
    form.reset({ ...defaults(), ...presetParams() });
    state.baseline = form.values();
    show();
  }
  let shownPreset = presetSel.value;
  presetSel.addEventListener("change", () => {
    if (presetSel.value === shownPreset) return;
    shownPreset = presetSel.value;
    delete state.overrides.method; // a method's own preset (dpo, grpo ...) selects its method
    showPreset();
  });

  /** The body POST /train/start gets: the same object the command, the estimate and saved settings use. */
  function currentBody() {
    if (!state.jsonValid) parseParams(paramsText.value); // throws the readable JSON error
    const params = { ...state.overrides };
    const body = { modality: m, base_model: baseSel.value, dataset: dataSel.value, output_name: outName.value.trim(), preset: presetSel.value || undefined, params };
    if (devicesSel.value !== "") body.devices = JSON.parse(devicesSel.value);
    return body;
  }

  const jobView = createJobView({ prefix: "", cancellable: true, cancelTestid: "train-cancel", cancelPath: (id) => `/train/cancel/${encodeURIComponent(id)}`, onEnd: (job) => ended(job) });
  const nextSteps = createNextSteps(app, { testid: "train-result" });
  const estimate = createEstimateBox({ body: () => (baseSel.value && dataSel.value ? currentBody() : null) });
  const command = createCommandBox({ body: currentBody });
  const saved = createSavedSettings(app, {
    body: currentBody,
    apply: (s) => {
      if (s.preset && presetEntries(info).some(([n]) => n === s.preset)) presetSel.value = shownPreset = s.preset;
      // what equals the preset is no override: the JSON box keeps only what differs
      state.overrides = Object.fromEntries(Object.entries(s.params || {}).filter(([k, v]) => !same(v, presetParams()[k])));
      if (s.base_model && [...baseSel.options].some((o) => o.value === s.base_model)) baseSel.value = s.base_model;
      if (s.dataset && [...dataSel.options].some((o) => o.value === s.dataset)) dataSel.value = s.dataset;
      showPreset();
    },
  });

  function changed() {
    estimate.schedule();
    command.refresh();
  }
  for (const el of [baseSel, dataSel, outName]) el.addEventListener("change", changed);

  const formEl = h(
    "form",
    { class: "card form-grid", testid: "train-form", novalidate: true },
    field("train.base_model", baseSel),
    field("train.dataset", dataSel),
    field("train.output_name", outName, "train.output_hint"),
    field("train.preset", presetSel, null, presetDesc),
    methods.length ? field("train.method", methodSel, "train.method_hint") : null,
    rewardsBox.root,
    saved.root,
    devicesField,
    h("details", { class: "full" }, h("summary", { i18n: "train.preset_params" }), presetView),
    h(
      "details",
      { class: "full", testid: "train-advanced" },
      h("summary", { i18n: "train.advanced" }),
      h("p", { class: "hint", i18n: "train.params_sync" }),
      field("train.params_json", paramsText, "train.params_hint"),
      paramsError,
      rule,
      form.empty ? null : h("div", {}, h("h4", { i18n: "train.params_form" }), form.root),
    ),
    estimate.root,
    h("div", { class: "row full" }, startBtn, command.button),
    command.root,
  );

  panel.append(h("h2", { i18n: "tab.train" }), formEl, jobView.root, nextSteps.root);
  showPreset();

  let running = null; // {jobId, name}: the name field keeps the adapter's name until its run ends
  function ended(job) {
    nextSteps.show(job, { base_model: job.spec ? job.spec.base_model_ref : baseSel.value, adapter: job.output_name });
    if (running && job.job_id === running.jobId && outName.value.trim() === running.name) outName.value = defaultName("lora");
    running = null;
  }

  formEl.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(startBtn, async () => {
      const body = currentBody();
      const { job_id: jobId } = await post("/train/start", body);
      running = { jobId, name: body.output_name };
      nextSteps.hide();
      jobView.follow(jobId);
    });
  });

  async function refresh() {
    const [models, datasets, devices] = await Promise.all([listModels(m), listDatasets(m), get("/api/devices").catch(() => ({ devices: [] }))]);
    fillModelSelect(baseSel, models);
    fillDatasetSelect(dataSel, datasets);
    saved.refreshJobs();
    rewardsBox.refresh();
    changed();
    setOptions(devicesSel, deviceOptions(devices.devices || []));
    devicesField.hidden = !(devices.devices || []).length;
  }

  return {
    onShow: refresh,
    follow: (jobId) => jobView.follow(jobId),
    onLang: () => changed(),
  };
}
