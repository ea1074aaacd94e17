// データセット: drag-and-drop upload, line-numbered validation errors, preview as chat bubbles,
// statistics, list and delete with confirmation.
import { del, get, post } from "../api.js";
import { confirmDialog, field, formatBytes, formatDate, h, kvTable, notifyKey, select, setBilingual, withBusy } from "../dom.js";
import { t } from "../i18n.js";
import { listDatasets } from "../lists.js";

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
  const formats = info.dataset_formats || [];
  const exts = (info.dataset_extensions || [".jsonl", ".json", ".csv", ".tsv", ".txt", ".parquet"]).join(",");

  const fileInput = h("input", { type: "file", testid: "dataset-upload", accept: exts, class: "file-input" });
  const nameInput = h("input", { type: "text", testid: "dataset-name", autocomplete: "off" });
  const formatSel = select([{ value: "auto", i18n: "datasets.format_auto" }, ...formats.map((f) => ({ value: typeof f === "string" ? f : f.id, label: typeof f === "string" ? f : f.id }))], { testid: "dataset-format" });
  const drop = h(
    "div",
    { class: "dropzone", testid: "dataset-dropzone" },
    h("p", { i18n: "datasets.drop_here" }),
    field("datasets.choose_file", fileInput),
    h("small", { class: "hint", text: exts }),
  );
  const errorBox = h("div", { class: "dataset-error", testid: "dataset-error", role: "alert", hidden: true });
  const resultTitle = h("h3", { testid: "dataset-preview-title" });
  const stats = h("div", { testid: "dataset-stats", class: "stats" });
  const preview = h("div", { class: "preview", testid: "dataset-preview" });
  const resultBox = h("div", { class: "card", hidden: true, testid: "dataset-result" }, resultTitle, stats, h("h4", { i18n: "datasets.preview" }), preview);

  const tbody = h("tbody", { testid: "dataset-list" });
  const table = h(
    "table",
    { class: "list" },
    h("thead", {}, h("tr", {}, ["datasets.name", "datasets.format", "datasets.rows", "models.size", "datasets.parent", "datasets.created", "common.actions"].map((k) => h("th", { scope: "col", i18n: k })))),
    tbody,
  );

  panel.append(
    h("h2", { i18n: "tab.datasets" }),
    h("div", { class: "card form-grid" }, h("h3", { class: "full", i18n: "datasets.upload_title" }), h("div", { class: "full" }, drop), field("datasets.save_as", nameInput, "datasets.save_as_hint"), field("datasets.format", formatSel)),
    errorBox,
    resultBox,
    h("div", { class: "card" }, h("h3", { i18n: "datasets.list" }), h("div", { class: "table-wrap" }, table)),
  );

  function showInfo(data) {
    errorBox.hidden = true;
    resultBox.hidden = false;
    resultTitle.textContent = `${data.name}${data.format ? ` — ${data.format}` : ""}${data.rows !== undefined ? ` — ${data.rows} ${t("datasets.rows_unit")}` : ""}`;
    stats.replaceChildren(kvTable({ rows: data.rows, format: data.format, encoding: data.encoding, size: data.size_bytes !== undefined ? formatBytes(data.size_bytes) : undefined, ...(data.stats || {}) }, "dataset-stats-table"));
    preview.replaceChildren(...(data.preview || []).map((row, i) => renderConversation(row, i)));
    if (!(data.preview || []).length) preview.append(h("p", { class: "muted", i18n: "datasets.no_preview" }));
  }

  function showUploadError(err) {
    resultBox.hidden = true;
    errorBox.hidden = false;
    const title = h("strong", {});
    setBilingual(title, err.message_ja || err.message, err.message || err.message_ja);
    const list = h("ul", {});
    const errs = err.detail && Array.isArray(err.detail.errors) ? err.detail.errors : [];
    for (const e of errs) {
      const li = h("li", { testid: "dataset-error-line" }, h("span", { class: "line-no", i18n: "common.line" }), h("span", { class: "mono", text: ` ${e.line}: ` }), h("span", { text: e.reason }));
      list.append(li);
    }
    errorBox.replaceChildren(title, h("code", { class: "muted", text: ` [${err.code}]` }), list);
  }

  async function upload(file) {
    const form = new FormData();
    form.append("file", file);
    form.append("modality", m);
    if (nameInput.value.trim()) form.append("name", nameInput.value.trim());
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
    }
  }

  fileInput.addEventListener("change", () => fileInput.files && fileInput.files[0] && upload(fileInput.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("is-over");
    });
  }
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("is-over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const file = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (file) upload(file);
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
          h("td", { class: "actions" }, viewBtn, delBtn),
        ),
      );
    }
  }

  return { onShow: refresh };
}
