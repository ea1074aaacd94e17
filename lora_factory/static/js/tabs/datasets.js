// データセット: drag-and-drop upload, line-numbered validation errors, preview as chat bubbles
// (tool calls, tool results and preference pairs shown as such), statistics, list and delete with
// confirmation. Folder datasets (images + captions, wavs + transcripts): a zip, several files or a
// whole folder in; a page-by-page browser with inline edits saved as a new version; a zip out.
import { del, get, post } from "../api.js";
import { append, confirmDialog, field, formatBytes, formatDate, h, kvTable, notifyKey, select, setBilingual, showError, withBusy } from "../dom.js";
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

function toolCallText(call) {
  const fn = (call && call.function) || call || {};
  const args = typeof fn.arguments === "string" ? fn.arguments : JSON.stringify(fn.arguments ?? {});
  return `${fn.name || "?"}(${args})`;
}

/** One message as a bubble: assistant tool calls and tool results are shown as such, not as plain text. */
function renderMessage(msg) {
  const rawRole = String(msg.role || msg.from || "user").toLowerCase();
  const role = ROLE_ALIASES[rawRole] || rawRole;
  const content = msg.content ?? msg.value ?? msg.text ?? "";
  const known = ["user", "assistant", "system", "tool"].includes(role);
  const bubble = h("div", { class: `bubble bubble-${role}`, testid: `bubble-${role}` }, h("span", { class: "bubble-role", i18n: `role.${known ? role : "other"}` }));
  if (role === "tool" && msg.name) bubble.append(h("span", { class: "tool-name mono", text: msg.name }));
  const text = typeof content === "string" ? content : JSON.stringify(content);
  if (text) bubble.append(h("span", { class: role === "tool" ? "bubble-text tool-result mono" : "bubble-text", text }));
  for (const call of Array.isArray(msg.tool_calls) ? msg.tool_calls : []) {
    bubble.append(h("div", { class: "tool-call", testid: "tool-call" }, h("span", { class: "tool-call-label", i18n: "datasets.tool_call" }), h("code", { class: "mono", text: toolCallText(call) })));
  }
  return bubble;
}

function renderTools(tools) {
  const list = h("ul", { class: "tool-list" });
  for (const tool of tools) {
    const fn = (tool && tool.function) || tool || {};
    list.append(h("li", {}, h("code", { class: "mono", text: fn.name || "?" }), h("span", { class: "muted", text: fn.description ? ` — ${fn.description}` : "" })));
  }
  return h("details", { class: "tool-defs", testid: "tool-defs" }, h("summary", {}, h("span", { i18n: "datasets.tools" }), h("span", { text: ` (${tools.length})` })), list);
}

/** One preview row as chat bubbles (messages / ShareGPT), or as labelled fields for other shapes. */
export function renderConversation(row, index) {
  const box = h("div", { class: "conversation", testid: "dataset-preview-row" }, h("div", { class: "conv-index", text: `#${index + 1}` }));
  const messages = messagesOf(row);
  if (messages) {
    if (Array.isArray(row.tools) && row.tools.length) box.append(renderTools(row.tools));
    for (const msg of messages) box.append(renderMessage(msg));
    if (row.preference === "pair") {
      for (const side of ["chosen", "rejected"]) {
        const part = h("div", { class: `preference preference-${side}`, testid: `preference-${side}` }, h("span", { class: "preference-label", i18n: `datasets.${side}` }));
        for (const msg of Array.isArray(row[side]) ? row[side] : []) part.append(renderMessage(msg));
        box.append(part);
      }
    } else if (row.preference === "kto") {
      box.append(h("span", { class: `preference-label preference-${row.label ? "chosen" : "rejected"}`, i18n: row.label ? "datasets.kto_good" : "datasets.kto_bad" }));
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
  const txtSplitSel = select(["auto", "line", "paragraph", "whole"].map((v) => ({ value: v, i18n: `datasets.txt_split_${v}` })), { testid: "dataset-txt-split" });
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

  // append() from dom.js skips the absent cards; the DOM's own append would write "null"
  append(panel, [
    h("h2", { i18n: "tab.datasets" }),
    h("div", { class: "card form-grid" }, h("h3", { class: "full", i18n: "datasets.upload_title" }), h("div", { class: "full" }, drop), field("datasets.save_as", nameInput, "datasets.save_as_hint"), folderKind ? null : field("datasets.format", formatSel), folderKind ? null : field("datasets.txt_split", txtSplitSel, "datasets.txt_split_hint")),
    importCard,
    errorBox,
    resultBox,
    h("div", { class: "card" }, h("h3", { i18n: "datasets.list" }), h("div", { class: "table-wrap" }, table)),
  ]);

  function showInfo(data) {
    errorBox.hidden = true;
    resultBox.hidden = false;
    resultTitle.textContent = `${data.name}${data.format ? ` — ${data.format}` : ""}${data.rows !== undefined ? ` — ${data.rows} ${t("datasets.rows_unit")}` : ""}`;
    const shown = { rows: data.rows, format: data.format, encoding: data.encoding, size: data.size_bytes !== undefined ? formatBytes(data.size_bytes) : undefined };
    if (data.txt_split) shown.txt_split = t(`datasets.txt_split_${data.txt_split}`);
    if (data.note) shown.note = data.note;
    stats.replaceChildren(kvTable({ ...shown, ...flatStats(data.stats) }, "dataset-stats-table"));
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
    // objects ({min, mean, max}, histograms) are said in words by kvTable, the raw JSON behind its toggle
    for (const [k, v] of Object.entries(statsObj || {})) out[k] = v;
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
    if (txtSplitSel.value && txtSplitSel.value !== "auto") form.append("txt_split", txtSplitSel.value);
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
      const archive = folderKind ? h("a", { href: `/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(d.name)}/archive`, class: "button small", i18n: "datasets.archive", testid: `dataset-archive-${d.name}`, download: `${d.name}.zip` }) : null;
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
