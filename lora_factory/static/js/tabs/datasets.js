// データセット: drag-and-drop upload, line-numbered validation errors, preview as chat bubbles,
// statistics, list and delete with confirmation. Folder datasets (images + captions, wavs +
// transcripts): a zip, several files or a whole folder in; a page-by-page browser with inline edits
// saved as a new version; a zip out.
import { del, get, post } from "../api.js";
import { confirmDialog, field, formatBytes, formatDate, h, kvTable, notifyKey, select, setBilingual, showError, withBusy } from "../dom.js";
import { t } from "../i18n.js";
import { createJobView } from "../jobview.js";
import { listDatasets } from "../lists.js";
import { createFolderBrowser } from "../widgets/folder_browser.js";

const ROLE_ALIASES = { human: "user", gpt: "assistant", bot: "assistant", model: "assistant", sys: "system" };

function messagesOf(row) {
  if (Array.isArray(row)) return row;
  if (!row || typeof row !== "object") return null;
  for (const key of ["messages", "conversations", "conversation", "chat"]) if (Array.isArray(row[key])) return row[key];
  return null;
}

/** One preview row as chat bubbles (messages / ShareGPT), or as labelled fields for other shapes. */
export function renderConversation(row, index) {
  const box = h("div", { class: "conversation", testid: "dataset-preview-row" }, h("div", { class: "conv-index", text: `#${index + 1}` }));
  const messages = messagesOf(row);
  if (messages) {
    for (const msg of messages) {
      const rawRole = String(msg.role || msg.from || "user").toLowerCase();
      const role = ROLE_ALIASES[rawRole] || rawRole;
      const content = msg.content ?? msg.value ?? msg.text ?? "";
      box.append(
        h(
          "div",
          { class: `bubble bubble-${role}` },
          h("span", { class: "bubble-role", i18n: `role.${["user", "assistant", "system", "tool"].includes(role) ? role : "other"}` }),
          h("span", { class: "bubble-text", text: typeof content === "string" ? content : JSON.stringify(content) }),
        ),
      );
    }
  } else {
    const dl = h("dl", { class: "fields" });
    for (const [k, v] of Object.entries(row || {})) dl.append(h("dt", { text: k }), h("dd", { text: typeof v === "string" ? v : JSON.stringify(v) }));
    box.append(dl);
  }
  return box;
}

export function mount(panel, app) {
  const m = app.modality;
  const info = app.info();
  const folderKind = info.dataset_kind === "folder";
  const formats = info.dataset_formats || [];
  const exts = folderKind ? ".zip" : (info.dataset_extensions || [".jsonl", ".json", ".csv", ".tsv", ".txt", ".parquet"]).join(",");

  const fileInput = h("input", { type: "file", testid: "dataset-upload", accept: exts, class: "file-input" });
  const filesInput = h("input", { type: "file", testid: "dataset-upload-files", multiple: true, webkitdirectory: true, class: "file-input" });
  const importPath = h("input", { type: "text", testid: "dataset-import-path", autocomplete: "off", placeholder: "C:\\Users\\me\\dataset" });
  const importBtn = h("button", { type: "button", i18n: "datasets.import_run", testid: "dataset-import-run" });
  const browser = createFolderBrowser(app, { testid: "dataset-browser", onJob: (jobId) => editView.follow(jobId) });
  const editView = createJobView({ prefix: "dataset-edit-", training: false, chart: false, onEnd: () => refresh().catch(showError) });
  const nameInput = h("input", { type: "text", testid: "dataset-name", autocomplete: "off" });
  const formatSel = select([{ value: "auto", i18n: "datasets.format_auto" }, ...formats.map((f) => ({ value: typeof f === "string" ? f : f.id, label: typeof f === "string" ? f : f.id }))], { testid: "dataset-format" });
  const drop = h(
    "div",
    { class: "dropzone", testid: "dataset-dropzone" },
    h("p", { i18n: "datasets.drop_here" }),
    folderKind ? h("p", { class: "muted small-text", i18n: "datasets.folder_hint" }) : null,
    field("datasets.choose_file", fileInput),
    folderKind ? field("datasets.choose_files", filesInput) : null,
    h("small", { class: "hint", text: exts }),
  );
  const importCard = folderKind
    ? h("div", { class: "card form-grid" }, h("h3", { class: "full", i18n: "datasets.import_folder" }), field("datasets.import_path", importPath), h("div", { class: "row" }, importBtn))
    : null;
  const errorBox = h("div", { class: "dataset-error", testid: "dataset-error", role: "alert", hidden: true });
  const resultTitle = h("h3", { testid: "dataset-preview-title" });
  const stats = h("div", { testid: "dataset-stats", class: "stats" });
  const preview = h("div", { class: "preview", testid: "dataset-preview" });
  const resultBox = h("div", { class: "card", hidden: true, testid: "dataset-result" }, resultTitle, stats, h("h4", { i18n: "datasets.preview" }), preview, browser.root, editView.root);

  const tbody = h("tbody", { testid: "dataset-list" });
  const table = h(
    "table",
    { class: "list" },
    h("thead", {}, h("tr", {}, ["datasets.name", "datasets.format", "datasets.rows", "models.size", "datasets.parent", "datasets.created", "common.actions"].map((k) => h("th", { scope: "col", i18n: k })))),
    tbody,
  );

  panel.append(
    h("h2", { i18n: "tab.datasets" }),
    h("div", { class: "card form-grid" }, h("h3", { class: "full", i18n: "datasets.upload_title" }), h("div", { class: "full" }, drop), field("datasets.save_as", nameInput, "datasets.save_as_hint"), folderKind ? null : field("datasets.format", formatSel)),
    importCard,
    errorBox,
    resultBox,
    h("div", { class: "card" }, h("h3", { i18n: "datasets.list" }), h("div", { class: "table-wrap" }, table)),
  );

  function showInfo(data) {
    errorBox.hidden = true;
    resultBox.hidden = false;
    resultTitle.textContent = `${data.name}${data.format ? ` — ${data.format}` : ""}${data.rows !== undefined ? ` — ${data.rows} ${t("datasets.rows_unit")}` : ""}`;
    stats.replaceChildren(kvTable({ rows: data.rows, format: data.format, encoding: data.encoding, size: data.size_bytes !== undefined ? formatBytes(data.size_bytes) : undefined, ...flatStats(data.stats) }, "dataset-stats-table"));
    if (folderKind) {
      preview.replaceChildren();
      browser.show(data.name).catch(showError);
      return;
    }
    preview.replaceChildren(...(data.preview || []).map((row, i) => renderConversation(row, i)));
    if (!(data.preview || []).length) preview.append(h("p", { class: "muted", i18n: "datasets.no_preview" }));
  }

  /** Statistics as table rows: histograms ({label, counts} or objects) shown compactly. */
  function flatStats(statsObj) {
    const out = {};
    for (const [k, v] of Object.entries(statsObj || {})) out[k] = v !== null && typeof v === "object" ? JSON.stringify(v) : v;
    return out;
  }

  function showUploadError(err) {
    resultBox.hidden = true;
    errorBox.hidden = false;
    const title = h("strong", {});
    setBilingual(title, err.message_ja || err.message, err.message || err.message_ja);
    const list = h("ul", {});
    const errs = err.detail && Array.isArray(err.detail.errors) ? err.detail.errors : [];
    for (const e of errs) {
      const where = e.file ? h("span", { class: "mono", text: `${e.file}${e.line ? `:${e.line}` : ""}: ` }) : [h("span", { class: "line-no", i18n: "common.line" }), h("span", { class: "mono", text: ` ${e.line}: ` })];
      const li = h("li", { testid: "dataset-error-line" }, where, h("span", { text: e.reason }));
      list.append(li);
    }
    errorBox.replaceChildren(title, h("code", { class: "muted", text: ` [${err.code}]` }), list);
  }

  async function upload(file, files) {
    const form = new FormData();
    if (files) {
      // several files of one folder dataset: their relative paths keep the sub-folders
      for (const f of files) form.append("files", f, f.webkitRelativePath || f.name);
      const first = files[0] && (files[0].webkitRelativePath || "").split("/")[0];
      form.append("name", nameInput.value.trim() || first || `dataset-${Date.now()}`);
    } else {
      form.append("file", file);
      if (nameInput.value.trim()) form.append("name", nameInput.value.trim());
    }
    form.append("modality", m);
    if (formatSel.value && formatSel.value !== "auto") form.append("format", formatSel.value);
    drop.classList.add("is-uploading");
    try {
      await withBusy(null, async () => {
        try {
          const data = await post("/api/datasets/upload", form);
          showInfo(data);
          notifyKey("success", "datasets.uploaded", { name: data.name, rows: data.rows ?? "?" });
          await refresh();
        } catch (err) {
          if (err && err.code) showUploadError(err);
          throw err;
        }
      });
    } finally {
      drop.classList.remove("is-uploading");
      fileInput.value = "";
      filesInput.value = "";
    }
  }

  fileInput.addEventListener("change", () => fileInput.files && fileInput.files[0] && upload(fileInput.files[0]));
  filesInput.addEventListener("change", () => filesInput.files && filesInput.files.length && upload(null, [...filesInput.files]));
  importBtn.addEventListener("click", () =>
    withBusy(importBtn, async () => {
      try {
        const data = await post("/api/datasets/import_folder", { modality: m, source_path: importPath.value.trim(), name: nameInput.value.trim() || null });
        showInfo(data);
        notifyKey("success", "datasets.uploaded", { name: data.name, rows: data.rows ?? "?" });
        await refresh();
      } catch (err) {
        if (err && err.code) showUploadError(err);
        throw err;
      }
    }),
  );
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("is-over");
    });
  }
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("is-over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const dropped = ev.dataTransfer && ev.dataTransfer.files ? [...ev.dataTransfer.files] : [];
    if (folderKind && dropped.length > 1) upload(null, dropped);
    else if (dropped[0]) upload(dropped[0]);
  });

  async function refresh() {
    const datasets = await listDatasets(m);
    tbody.replaceChildren();
    if (!datasets.length) {
      tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted", i18n: "datasets.empty" })));
      return;
    }
    for (const d of datasets) {
      const viewBtn = h("button", { type: "button", class: "small", i18n: "common.view", testid: `dataset-view-${d.name}` });
      const delBtn = h("button", { type: "button", class: "small danger", i18n: "common.delete", testid: `dataset-delete-${d.name}` });
      viewBtn.addEventListener("click", () =>
        withBusy(viewBtn, async () => showInfo(await get(`/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(d.name)}?rows=20`))),
      );
      delBtn.addEventListener("click", () =>
        withBusy(delBtn, async () => {
          const ok = await confirmDialog(`データセット「${d.name}」を削除しますか? この操作は元に戻せません。`, `Delete the dataset "${d.name}"? This cannot be undone.`);
          if (!ok) return;
          await del(`/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(d.name)}`);
          notifyKey("success", "common.deleted", { name: d.name });
          await refresh();
        }),
      );
      const archive = folderKind ? h("a", { href: `/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(d.name)}/archive`, class: "small-text", i18n: "datasets.archive", testid: `dataset-archive-${d.name}`, download: `${d.name}.zip` }) : null;
      tbody.append(
        h(
          "tr",
          { testid: `dataset-row-${d.name}` },
          h("td", { text: d.name }),
          h("td", { text: d.format || "-" }),
          h("td", { class: "num", text: d.rows ?? "-" }),
          h("td", { class: "num", text: formatBytes(d.size_bytes) }),
          h("td", { text: d.parent || "-" }),
          h("td", { text: formatDate(d.created_at) }),
          h("td", { class: "actions" }, viewBtn, archive, delBtn),
        ),
      );
    }
  }

  return { onShow: refresh };
}
