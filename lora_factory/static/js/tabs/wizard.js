// 学習ウィザード: the shortest path. Where things live (with "open folder"), then
// model -> dataset -> preset -> start; with nothing installed, one button builds the offline demo
// chain (tiny model + sample dataset + training).
import { get, post, waitJob } from "../api.js";
import { defaultName, field, h, notifyKey, select, setBilingual, setI18n, setOptions, showError, withBusy } from "../dom.js";
import { createJobView } from "../jobview.js";
import { fillDatasetSelect, fillModelSelect, listDatasets, listModels, refOf } from "../lists.js";
import { createNextSteps } from "../train/next_steps.js";
import { methodOptions, presetDescription, presetEntries, presetOptions } from "./train.js";

// the last training started from the wizard, per modality: a reload shows it (and its result) again
const lastJobKey = (m) => `lora_factory.wizard_job.${m}`;
function rememberJob(m, value) {
  try {
    if (value) localStorage.setItem(lastJobKey(m), JSON.stringify(value));
    else localStorage.removeItem(lastJobKey(m));
  } catch {
    // not remembered: the job is still in 履歴
  }
}
function lastJob(m) {
  try {
    return JSON.parse(localStorage.getItem(lastJobKey(m)) || "null");
  } catch {
    return null;
  }
}

function pathRow(app, key, labelKey, path, openKey) {
  const code = h("code", { class: "path", testid: `wizard-path-${key}`, text: path || "-" });
  const open = h("button", { type: "button", class: "small", i18n: "wizard.open_folder", testid: `wizard-open-${key}` });
  open.addEventListener("click", () =>
    withBusy(open, async () => {
      const res = await post("/utils/open_path", { key: openKey });
      if (res && res.opened === false) notifyKey("info", "wizard.folder_not_opened", { path: res.path || path });
    }),
  );
  return h("div", { class: "path-row" }, h("span", { class: "path-label", i18n: labelKey }), code, open);
}

export function mount(panel, app) {
  const m = app.modality;
  const paths = (app.paths && app.paths[m]) || {};
  const pathBox = h(
    "div",
    { class: "paths", testid: "wizard-paths" },
    pathRow(app, "models", "wizard.path_models", paths.models, `${m}_models`),
    pathRow(app, "datasets", "wizard.path_datasets", paths.datasets, `${m}_datasets`),
    pathRow(app, "output", "wizard.path_output", paths.output, `${m}_output`),
    pathRow(app, "logs", "wizard.path_logs", app.paths && app.paths.logs, "logs"),
  );
  const jumps = h(
    "div",
    { class: "row wrap" },
    h("button", { type: "button", i18n: "wizard.go_models", testid: "wizard-go-models", onclick: () => app.goTab("models") }),
    h("button", { type: "button", i18n: "wizard.go_datasets", testid: "wizard-go-datasets", onclick: () => app.goTab("datasets") }),
    h("button", { type: "button", i18n: "wizard.go_train", testid: "wizard-go-train", onclick: () => app.goTab("train") }),
  );

  // -- the demo offer ------------------------------------------------------------------------
  const demoBtn = h("button", { type: "button", class: "primary", i18n: "wizard.demo_run", testid: "wizard-demo" });
  const demoStage = h("p", { class: "muted", testid: "wizard-demo-stage" });
  const demoBox = h("div", { class: "callout", hidden: true, testid: "wizard-demo-box" }, h("p", { i18n: "wizard.demo_text" }), h("div", { class: "row wrap" }, demoBtn), demoStage);

  // -- step 1: model --------------------------------------------------------------------------
  const modelSel = select([], { testid: "wizard-model" });
  const tinyBtn = h("button", { type: "button", i18n: "wizard.make_tiny", testid: "wizard-tiny" });
  const repoInput = h("input", { type: "text", i18nPlaceholder: "models.repo_placeholder", testid: "wizard-repo", autocomplete: "off" });
  const dlBtn = h("button", { type: "button", i18n: "models.download", testid: "wizard-download" });
  const dlView = createJobView({ prefix: "wizard-dl-", bytes: true, chart: false, cancellable: true, logOpen: false, onEnd: () => refresh() });

  // -- step 2: dataset ------------------------------------------------------------------------
  const dataSel = select([], { testid: "wizard-dataset" });
  const sampleBtn = h("button", { type: "button", i18n: "wizard.make_sample", testid: "wizard-sample" });
  const upload = h("input", { type: "file", testid: "wizard-upload", accept: ".jsonl,.json,.csv,.tsv,.txt,.parquet" });

  // -- step 3/4: preset, output, start --------------------------------------------------------
  const presetSel = select([], { testid: "wizard-preset" });
  const presetDesc = h("small", { class: "hint", testid: "wizard-preset-description" });
  const methods = methodOptions(app.info());
  const methodSel = select(methods, { testid: "wizard-method" });
  const outName = h("input", { type: "text", value: defaultName("lora"), testid: "wizard-output-name" });
  const startBtn = h("button", { type: "button", class: "primary", i18n: "train.start", testid: "wizard-start" });
  const resumed = h("p", { class: "hint", i18n: "wizard.resumed", testid: "wizard-resumed", hidden: true });
  const nextSteps = createNextSteps(app, { testid: "wizard-result" });
  let current = null; // {job_id, adapter, base_model, demo}: the run the job view follows
  const jobView = createJobView({
    prefix: "wizard-",
    cancellable: true,
    cancelPath: (id) => `/train/cancel/${encodeURIComponent(id)}`,
    onEnd: (job) => {
      if (!current || job.job_id !== current.job_id) return;
      nextSteps.show(job, { base_model: current.base_model, adapter: job.output_name || current.adapter, demo: current.demo });
      // the name field showed the adapter's name while it trained; the next run gets a new one
      if (outName.value.trim() === current.adapter) outName.value = defaultName("lora");
    },
  });

  const step = (n, titleKey, ...body) => h("li", { class: "step" }, h("h3", {}, h("span", { class: "step-n", text: String(n) }), h("span", { i18n: titleKey })), ...body);

  panel.append(
    h("h2", { i18n: "wizard.title" }),
    h("p", { class: "lead", i18n: "wizard.lead" }),
    h("div", { class: "card" }, h("h3", { i18n: "wizard.paths" }), pathBox, jumps),
    demoBox,
    h(
      "ol",
      { class: "steps" },
      step(1, "wizard.step_model", field("wizard.model", modelSel), h("div", { class: "row wrap" }, tinyBtn), h("div", { class: "row wrap" }, field("models.repo_id", repoInput), dlBtn), dlView.root),
      step(2, "wizard.step_dataset", field("wizard.dataset", dataSel), h("div", { class: "row wrap" }, sampleBtn), h("div", { class: "row wrap" }, field("wizard.upload", upload))),
      step(3, "wizard.step_preset", field("train.preset", presetSel, null, presetDesc), methods.length ? field("wizard.method", methodSel, "train.method_hint") : null),
      step(4, "wizard.step_start", field("train.output_name", outName), h("div", { class: "row wrap" }, startBtn)),
    ),
    resumed,
    jobView.root,
    nextSteps.root,
  );

  async function refresh() {
    const [found, datasets] = await Promise.all([listModels(m), listDatasets(m)]);
    models = found;
    fillModelSelect(modelSel, models);
    fillDatasetSelect(dataSel, datasets);
    demoBox.hidden = models.length > 0;
    return { models, datasets };
  }

  setOptions(presetSel, presetOptions(app.info()));
  if (app.info().default_preset) presetSel.value = app.info().default_preset;
  const presetMethod = () => {
    const entry = presetEntries(app.info()).find(([n]) => n === presetSel.value);
    return (entry && entry[1] && entry[1].method) || (methods[0] && methods[0].value);
  };
  const showPreset = () => {
    const desc = presetDescription(app.info(), presetSel.value);
    presetDesc.hidden = !desc;
    if (desc) setBilingual(presetDesc, desc.ja, desc.en);
    if (methods.length) methodSel.value = presetMethod();
  };
  presetSel.addEventListener("change", showPreset);
  showPreset();
  tinyBtn.hidden = !(app.supports("tiny_model") || !Array.isArray(app.info().supports));

  tinyBtn.addEventListener("click", () =>
    withBusy(tinyBtn, async () => {
      const { job_id: jobId } = await post("/api/models/tiny", { modality: m });
      dlView.follow(jobId);
      await waitJob(jobId);
      await refresh();
      notifyKey("success", "models.tiny_done");
    }),
  );
  dlBtn.addEventListener("click", () =>
    withBusy(dlBtn, async () => {
      if (!repoInput.value.trim()) throw new Error(window.document.documentElement.lang === "en" ? "Enter a repo id." : "リポジトリIDを入力してください。");
      const { job_id: jobId } = await post("/api/models/download", { modality: m, repo_id: repoInput.value.trim() });
      dlView.follow(jobId);
    }),
  );
  sampleBtn.addEventListener("click", () =>
    withBusy(sampleBtn, async () => {
      const info = await post("/api/datasets/sample", { modality: m });
      await refresh();
      if (info && (info.rel_path || info.name)) dataSel.value = refOf(info);
      notifyKey("success", "datasets.sample_done", { name: info && info.name });
    }),
  );
  upload.addEventListener("change", () =>
    withBusy(null, async () => {
      const file = upload.files && upload.files[0];
      if (!file) return;
      const form = new FormData();
      form.append("file", file);
      form.append("modality", m);
      const info = await post("/api/datasets/upload", form);
      await refresh();
      dataSel.value = refOf(info);
      notifyKey("success", "datasets.uploaded", { name: info.name, rows: info.rows ?? "?" });
    }).finally(() => {
      upload.value = "";
    }),
  );

  let models = [];
  async function startTraining(model, dataset) {
    const params = methods.length && methodSel.value !== presetMethod() ? { method: methodSel.value } : {};
    const body = { modality: m, base_model: model, dataset, output_name: outName.value.trim(), preset: presetSel.value || undefined, params };
    const { job_id: jobId } = await post("/train/start", body);
    const chosen = models.find((x) => refOf(x) === model);
    current = { job_id: jobId, adapter: body.output_name, base_model: model, demo: Boolean(chosen && chosen.demo) };
    rememberJob(m, current);
    resumed.hidden = true;
    nextSteps.hide();
    jobView.follow(jobId);
    return jobId;
  }

  // a reload (or another visit) shows the last run started here, and its result once it ended
  let restored = false;
  async function restore() {
    if (restored) return;
    restored = true;
    const last = lastJob(m);
    if (!last || !last.job_id) return;
    try {
      await get(`/api/jobs/${encodeURIComponent(last.job_id)}`);
    } catch {
      rememberJob(m, null); // deleted from 履歴 meanwhile
      return;
    }
    current = last;
    resumed.hidden = false;
    jobView.follow(last.job_id);
  }

  startBtn.addEventListener("click", () =>
    withBusy(startBtn, async () => {
      await startTraining(modelSel.value, dataSel.value);
    }),
  );

  demoBtn.addEventListener("click", () =>
    withBusy(demoBtn, async () => {
      const setStage = (key) => setI18n(demoStage, key);
      setStage("wizard.demo_stage_model");
      const { job_id: modelJob } = await post("/api/models/tiny", { modality: m });
      dlView.follow(modelJob);
      const done = await waitJob(modelJob);
      setStage("wizard.demo_stage_dataset");
      const data = await post("/api/datasets/sample", { modality: m });
      const { models } = await refresh();
      dataSel.value = refOf(data);
      setStage("wizard.demo_stage_train");
      const result = done.result || {};
      const made = models.find((x) => (result.path && x.rel_path === result.path) || (result.name && x.name === result.name));
      const model = made ? refOf(made) : modelSel.value;
      modelSel.value = model;
      await startTraining(model, refOf(data));
      setStage("wizard.demo_stage_started");
    }).catch(showError),
  );

  return {
    onShow: async () => {
      await refresh();
      await restore();
    },
    refreshPaths: async () => {
      app.paths = await get("/utils/paths");
    },
  };
}
