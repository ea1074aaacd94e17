// Loading the modality's models / datasets / adapters into <select>s, shared by several tabs.
import { get } from "./api.js";
import { formatBytes, setOptions, showError } from "./dom.js";

const q = (modality) => `modality=${encodeURIComponent(modality)}`;

export async function listModels(modality) {
  return (await get(`/api/models?${q(modality)}`)).models || [];
}

export async function listDatasets(modality) {
  return (await get(`/api/datasets?${q(modality)}`)).datasets || [];
}

export async function listAdapters(modality) {
  return (await get(`/api/adapters?${q(modality)}`)).adapters || [];
}

/** The reference the API accepts for a model / dataset: its workspace-relative path, else its name. */
export function refOf(item) {
  return item.rel_path || item.name;
}

export function fillModelSelect(el, items, placeholderKey = "common.choose_model") {
  setOptions(el, [
    { value: "", i18n: placeholderKey },
    ...items.map((m) => ({ value: refOf(m), label: `${m.name}${m.architecture ? ` (${m.architecture})` : ""}` })),
  ]);
  if (!el.value && items.length) el.value = refOf(items[0]);
}

export function fillDatasetSelect(el, items, placeholderKey = "common.choose_dataset") {
  setOptions(el, [
    { value: "", i18n: placeholderKey },
    ...items.map((d) => ({ value: refOf(d), label: `${d.name}${d.rows !== undefined && d.rows !== null ? ` (${d.rows}${d.format ? `, ${d.format}` : ""})` : ` (${formatBytes(d.size_bytes)})`}` })),
  ]);
  if (!el.value && items.length) el.value = refOf(items[items.length - 1]);
}

export function fillAdapterSelect(el, items) {
  setOptions(el, [{ value: "", i18n: "infer.no_adapter" }, ...items.map((a) => ({ value: a.rel_path || a.name, label: a.name }))]);
}

/** The base-model and adapter selects of an inference view, refilled from the API (errors shown). */
export async function refreshModelAndAdapter(modality, baseSel, adapterSel) {
  try {
    const [models, adapters] = await Promise.all([listModels(modality), listAdapters(modality)]);
    fillModelSelect(baseSel, models);
    fillAdapterSelect(adapterSel, adapters);
  } catch (err) {
    showError(err);
  }
}
