// Browse a folder dataset page by page (thumbnails / players with their caption or transcript), edit
// the texts inline and save them as a new version of the dataset: a refine job with the plugin's
// "edit_items" operation, so the edit keeps its lineage like every other version.
import { get, post } from "../api.js";
import { defaultName, h, notifyKey, promptDialog, setBilingual, setI18n, withBusy } from "../dom.js";

// an item's facts in the user's language: known keys labelled, units added, the rest as written
const META_LABELS = {
  speaker: ["話者", "speaker"], language: ["言語", "language"], line: ["行", "line"], duration: ["長さ", "length"],
  sample_rate: ["サンプリング周波数", "sample rate"], channels: ["チャンネル", "channels"], width: ["幅", "width"],
  height: ["高さ", "height"], caption: ["キャプション", "caption"], size: ["サイズ", "size"], repeats: ["繰り返し", "repeats"],
};
const META_UNITS = { duration: " s", sample_rate: " Hz", width: " px", height: " px" };

export function metaLine(extra, lang) {
  return extra.map(([k, v]) => `${(META_LABELS[k] || [k, k])[lang]}: ${typeof v === "object" ? JSON.stringify(v) : v}${META_UNITS[k] || ""}`).join("  ");
}

const PAGE = 24;

/**
 * @param {object} app the UI shell (modality, supports())
 * @param {object} opts testid, onJob(jobId) called with the refine job of a save
 * @returns {{root, show(name): Promise<object>}}
 */
export function createFolderBrowser(app, opts = {}) {
  const testid = opts.testid || "folder-browser";
  const title = h("h4", { testid: `${testid}-title` });
  const grid = h("div", { class: "item-grid", testid: `${testid}-items` });
  const pageInfo = h("span", { class: "muted mono", testid: `${testid}-page` });
  const prev = h("button", { type: "button", class: "small", i18n: "common.prev", testid: `${testid}-prev` });
  const next = h("button", { type: "button", class: "small", i18n: "common.next", testid: `${testid}-next` });
  const editable = app.supports("item_edit") && opts.editable !== false;
  const save = h("button", { type: "button", class: "primary", i18n: "datasets.save_edits", testid: `${testid}-save`, disabled: true, hidden: !editable });
  const dirty = h("span", { class: "muted small-text", testid: `${testid}-dirty` });
  const root = h("div", { class: "folder-browser", testid, hidden: true }, title, h("div", { class: "row wrap" }, prev, pageInfo, next, save, dirty), grid);
  const edits = new Map();
  let name = null;
  let offset = 0;
  let total = 0;

  function markDirty() {
    save.disabled = edits.size === 0;
    if (edits.size) setI18n(dirty, "datasets.edits_pending", { n: edits.size });
    else dirty.textContent = "";
  }

  function tile(row) {
    const media = (row.media || []).map((m) =>
      m.kind === "audio"
        ? h("audio", { controls: true, preload: "none", src: m.url, testid: `${testid}-audio` })
        : h("img", { src: m.url, alt: row.text || row.id, loading: "lazy", testid: `${testid}-image` }),
    );
    const original = row.text ?? "";
    const text = editable
      ? h("textarea", { rows: 2, testid: `${testid}-text`, "data-item": row.id, value: edits.has(row.id) ? edits.get(row.id) : original })
      : h("p", { class: "item-text", testid: `${testid}-text`, text: original });
    if (editable) {
      text.value = edits.has(row.id) ? edits.get(row.id) : original;
      text.addEventListener("input", () => {
        if (text.value === original) edits.delete(row.id);
        else edits.set(row.id, text.value);
        markDirty();
      });
    }
    const extra = Object.entries(row).filter(([k, v]) => !["id", "text", "media"].includes(k) && v !== "" && v != null);
    let meta = null;
    if (extra.length) {
      meta = h("small", { class: "muted", testid: `${testid}-meta` });
      setBilingual(meta, metaLine(extra, 0), metaLine(extra, 1));
    }
    return h(
      "figure",
      { class: "item-tile", testid: `${testid}-item`, "data-item": row.id },
      ...media,
      h("figcaption", {}, h("code", { class: "small-text", text: row.id || "" }), text, meta),
    );
  }

  async function load() {
    const info = await get(`/api/datasets/${encodeURIComponent(app.modality)}/${encodeURIComponent(name)}?rows=${PAGE}&offset=${offset}`);
    total = Number(info.rows) || 0;
    grid.replaceChildren(...(info.preview || []).map(tile));
    pageInfo.textContent = `${total ? offset + 1 : 0}-${Math.min(offset + PAGE, total)} / ${total}`;
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= total;
    return info;
  }

  prev.addEventListener("click", () => withBusy(prev, async () => { offset = Math.max(0, offset - PAGE); await load(); }));
  next.addEventListener("click", () => withBusy(next, async () => { offset += PAGE; await load(); }));
  save.addEventListener("click", () =>
    withBusy(save, async () => {
      const output = await promptDialog("datasets.version_name", defaultName(`${name}-edit`), "common.ok", "edit-version");
      if (!output) return;
      const body = { modality: app.modality, dataset: name, output_name: output, operations: [{ op: "edit_items", params: { edits: [...edits].map(([id, text]) => ({ id, text })) } }] };
      const { job_id: jobId } = await post("/api/datasets/refine", body);
      edits.clear();
      markDirty();
      notifyKey("info", "datasets.edit_started", { name: output });
      if (opts.onJob) opts.onJob(jobId, output);
    }),
  );

  return {
    root,
    async show(datasetName) {
      name = datasetName;
      offset = 0;
      edits.clear();
      markDirty();
      title.textContent = datasetName;
      root.hidden = false;
      return load();
    },
  };
}
