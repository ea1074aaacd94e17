// Saved settings of the training form: named per modality (kept in this browser's localStorage),
// written to / read from a .json file to share or keep, and "start from a past job's settings"
// (its preset and the parameters it was asked for, read from the job's recorded spec).
import { ApiError, get } from "../api.js";
import { confirmDialog, formatDate, h, notifyKey, promptDialog, select, setOptions, showError } from "../dom.js";

const FILE_KIND = "lora_factory.train_settings";

const storageKey = (modality) => `lora_factory.train_settings.${modality}`;

export function loadSaved(modality) {
  try {
    const data = JSON.parse(localStorage.getItem(storageKey(modality)) || "{}");
    return data && typeof data === "object" && !Array.isArray(data) ? data : {};
  } catch {
    return {};
  }
}

function store(modality, all) {
  localStorage.setItem(storageKey(modality), JSON.stringify(all));
}

/** What one saved setting holds: the preset, the overrides and the chosen model / dataset. */
function settingOf(body, name) {
  return { kind: FILE_KIND, version: 1, modality: body.modality, name, preset: body.preset || null, params: body.params || {}, base_model: body.base_model || null, dataset: body.dataset || null };
}

/** A settings file read back, checked: the right kind and this modality, or a readable error. */
export function readSettingsFile(text, modality) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    data = null;
  }
  const bad = (ja, en) => new ApiError(400, { error: { code: "SETTINGS_FILE_INVALID", message_ja: ja, message: en } });
  if (!data || data.kind !== FILE_KIND || typeof data.params !== "object" || Array.isArray(data.params)) {
    throw bad("学習設定のファイルではありません(LoRA Factory で書き出した .json を選んでください)。", "This is not a training settings file (choose a .json written by LoRA Factory).");
  }
  if (data.modality && data.modality !== modality) {
    throw bad(`この設定は「${data.modality}」用です。モダリティを切り替えてから読み込んでください。`, `These settings are for '${data.modality}'; switch the modality first.`);
  }
  return data;
}

/** opts.body(): the form's request body; opts.apply(setting): fill the form from a setting. */
export function createSavedSettings(app, opts) {
  const m = app.modality;
  const list = select([], { testid: "train-settings-list" });
  const loadBtn = h("button", { type: "button", class: "small", i18n: "settings_saved.load", testid: "train-settings-load" });
  const saveBtn = h("button", { type: "button", class: "small", i18n: "settings_saved.save", testid: "train-settings-save" });
  const delBtn = h("button", { type: "button", class: "small", i18n: "settings_saved.delete", testid: "train-settings-delete" });
  const exportBtn = h("button", { type: "button", class: "small", i18n: "settings_saved.export", testid: "train-settings-export" });
  const importInput = h("input", { type: "file", accept: ".json,application/json", testid: "train-settings-import", class: "sr-only", id: `train-settings-import-${m}` });
  const importLabel = h("label", { class: "button small", for: importInput.id, i18n: "settings_saved.import" });
  const jobs = select([], { testid: "train-from-job" });
  const jobBtn = h("button", { type: "button", class: "small", i18n: "settings_saved.from_job", testid: "train-from-job-apply" });
  const root = h(
    "fieldset",
    { class: "full saved-settings", testid: "train-settings" },
    h("legend", { i18n: "settings_saved.title" }),
    h("div", { class: "row wrap" }, list, loadBtn, saveBtn, delBtn, exportBtn, importLabel, importInput),
    h("div", { class: "row wrap" }, jobs, jobBtn),
  );
  let pastJobs = [];

  function fillList(chosen) {
    const all = loadSaved(m);
    setOptions(list, [{ value: "", i18n: "settings_saved.choose" }, ...Object.keys(all).sort().map((name) => ({ value: name, label: name }))]);
    if (chosen) list.value = chosen;
  }
  fillList();

  saveBtn.addEventListener("click", () =>
    (async () => {
      const body = opts.body();
      const name = await promptDialog("settings_saved.name", list.value || body.preset || "", "settings_saved.save", "settings-name");
      if (!name) return;
      const all = loadSaved(m);
      all[name] = settingOf(body, name);
      store(m, all);
      fillList(name);
      notifyKey("success", "settings_saved.saved", { name });
    })().catch(showError),
  );
  loadBtn.addEventListener("click", () => {
    const setting = loadSaved(m)[list.value];
    if (setting) opts.apply(setting);
  });
  delBtn.addEventListener("click", async () => {
    if (!list.value) return;
    const name = list.value;
    if (!(await confirmDialog(`保存した設定「${name}」を削除しますか?`, `Delete the saved settings '${name}'?`))) return;
    const all = loadSaved(m);
    delete all[name];
    store(m, all);
    fillList();
  });
  exportBtn.addEventListener("click", () => {
    try {
      const setting = list.value ? loadSaved(m)[list.value] : settingOf(opts.body(), "settings");
      const blob = new Blob([JSON.stringify(setting, null, 2)], { type: "application/json" });
      const a = h("a", { href: URL.createObjectURL(blob), download: `${setting.name || "settings"}.lora-settings.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    } catch (err) {
      showError(err);
    }
  });
  importInput.addEventListener("change", async () => {
    const file = importInput.files && importInput.files[0];
    importInput.value = "";
    if (!file) return;
    try {
      const setting = readSettingsFile(await file.text(), m);
      const all = loadSaved(m);
      const name = setting.name || file.name.replace(/\.json$/i, "");
      all[name] = { ...setting, name };
      store(m, all);
      fillList(name);
      opts.apply(all[name]);
      notifyKey("success", "settings_saved.imported", { name });
    } catch (err) {
      showError(err);
    }
  });
  jobBtn.addEventListener("click", () => {
    const job = pastJobs.find((j) => j.job_id === jobs.value);
    if (!job) return;
    const spec = job.spec || {};
    opts.apply({ preset: spec.preset, params: spec.requested_params || spec.params || {}, base_model: spec.base_model_ref, dataset: spec.dataset_ref });
    notifyKey("info", "settings_saved.from_job_done", { name: job.output_name || job.job_id });
  });

  return {
    root,
    async refreshJobs() {
      try {
        pastJobs = ((await get(`/api/jobs?kind=train&modality=${encodeURIComponent(m)}&limit=50`)).jobs || []).filter((j) => j.spec);
      } catch {
        pastJobs = [];
      }
      setOptions(jobs, [{ value: "", i18n: "settings_saved.choose_job" }, ...pastJobs.map((j) => ({ value: j.job_id, label: `${j.output_name || j.job_id} · ${formatDate(j.created_at)}` }))]);
    },
  };
}
