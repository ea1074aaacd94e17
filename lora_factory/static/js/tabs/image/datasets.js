// 画像データセット: zip or a folder of images + captions in, every bad file named on refusal; the
// list; a thumbnail gallery with the caption of each image editable in place (saved as a new version
// through the edit_items refine, so the original stays); buckets and tag statistics; zip download.
import { del, get, post, waitJob } from "../../api.js";
import { confirmDialog, formatBytes, formatDate, h, notify, promptDialog, setBilingual, showError, withBusy } from "../../dom.js";
import { listDatasets } from "../../lists.js";
import { bi, biButton, biField, ensureStyles } from "./common.js";

const PAGE = 24;

function barChart(stat, testid) {
  const box = h("div", { class: "img-bars", testid });
  const max = Math.max(1, ...(stat.counts || []));
  (stat.label || []).forEach((label, i) => {
    const n = stat.counts[i];
    box.append(h("div", { class: "img-bar" }, h("span", { class: "img-bar-label mono", text: label }),
      h("span", { class: "img-bar-fill", style: `width:${Math.round((100 * n) / max)}%` }), h("span", { class: "mono", text: String(n) })));
  });
  return box;
}

export function mount(panel, app) {
  ensureStyles();
  const m = app.modality;
  const fileInput = h("input", { type: "file", accept: ".zip,.png,.jpg,.jpeg,.webp,.txt,.caption", multiple: true, testid: "img-dataset-upload", class: "file-input" });
  const folderInput = h("input", { type: "file", webkitdirectory: true, multiple: true, testid: "img-dataset-folder", class: "file-input" });
  const nameInput = h("input", { type: "text", testid: "img-dataset-name", autocomplete: "off" });
  const drop = h("div", { class: "dropzone", testid: "img-dataset-dropzone" },
    bi("zip、または画像と同名の .txt キャプションをここへドロップ(<回数>_<名前>/ フォルダで繰り返し回数を指定できます)",
      "Drop a zip, or images with same-name .txt captions (a <repeats>_<name>/ folder sets the repeats)", "p"),
    biField("ファイル(zip / 画像)", "Files (zip / images)", fileInput), biField("フォルダ", "Folder", folderInput));
  const errorBox = h("div", { class: "dataset-error", role: "alert", hidden: true, testid: "img-dataset-error" });
  const tbody = h("tbody", { testid: "img-dataset-list" });
  const viewer = h("div", { class: "card", hidden: true, testid: "img-dataset-viewer" });

  panel.append(
    h("h2", { i18n: "tab.datasets" }),
    h("div", { class: "card form-grid" }, bi("画像データセットを追加", "Add an image dataset", "h3", { class: "full" }),
      h("div", { class: "full" }, drop), biField("保存名", "Save as", nameInput, "空欄ならファイル名から", "empty: from the file name")),
    errorBox,
    viewer,
    h("div", { class: "card" }, h("h3", { i18n: "datasets.list" }), h("div", { class: "table-wrap" }, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, bi("名前", "Name", "th"), bi("画像数", "Images", "th"), bi("サイズ", "Size", "th"),
        bi("元", "Parent", "th"), bi("作成", "Created", "th"), h("th", { i18n: "common.actions" }))), tbody))),
  );

  function showRefusal(err) {
    errorBox.hidden = false;
    const list = h("ul", {});
    for (const e of (err.detail && err.detail.errors) || []) {
      list.append(h("li", { testid: "img-dataset-error-file" }, h("code", { text: e.file || `#${e.line}` }), " ", setBilingual(h("span", {}), e.reason_ja || e.reason, e.reason)));
    }
    errorBox.replaceChildren(setBilingual(h("strong", {}), err.message_ja, err.message), h("code", { class: "muted", text: ` [${err.code}]` }), list);
  }

  async function upload(files) {
    if (!files.length) return;
    const form = new FormData();
    form.append("modality", m);
    if (nameInput.value.trim()) form.append("name", nameInput.value.trim());
    if (files.length === 1 && files[0].name.toLowerCase().endsWith(".zip")) form.append("file", files[0]);
    else for (const f of files) form.append("files", f, f.webkitRelativePath || f.name);
    await withBusy(null, async () => {
      try {
        const data = await post("/api/datasets/upload", form);
        errorBox.hidden = true;
        notify("success", `「${data.name}」を追加しました(${data.rows} 枚)`, `Added "${data.name}" (${data.rows} images)`);
        await refresh();
        await open(data.name);
      } catch (err) {
        if (err && err.code) showRefusal(err);
        throw err;
      } finally {
        fileInput.value = "";
        folderInput.value = "";
      }
    });
  }
  fileInput.addEventListener("change", () => upload([...fileInput.files]));
  folderInput.addEventListener("change", () => upload([...folderInput.files]));
  for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (ev) => { ev.preventDefault(); drop.classList.add("is-over"); });
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("is-over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    upload([...((ev.dataTransfer && ev.dataTransfer.files) || [])]);
  });

  async function open(name, offset = 0) {
    const data = await get(`/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(name)}?rows=${PAGE}&offset=${offset}`);
    const edits = new Map();
    const stats = data.stats || {};
    const gallery = h("div", { class: "img-gallery", testid: "img-gallery" });
    const filter = h("input", { type: "search", testid: "img-gallery-filter", autocomplete: "off" });
    for (const item of data.preview || []) {
      const media = (item.media || [])[0] || {};
      const caption = h("textarea", { rows: 3, class: "img-caption", testid: "img-caption", "data-id": item.id, value: item.text || "" });
      caption.addEventListener("input", () => {
        if (caption.value !== (item.text || "")) edits.set(item.id, caption.value);
        else edits.delete(item.id);
        caption.classList.toggle("is-edited", edits.has(item.id));
        saveBtn.disabled = edits.size === 0;
      });
      gallery.append(h("figure", { class: "img-card", testid: "img-card", "data-tags": (item.tags || []).join(",").toLowerCase() },
        h("img", { src: media.url || "", alt: item.id, loading: "lazy", class: "img-thumb" }),
        h("figcaption", {}, h("code", { class: "muted", text: `${item.id} · ${item.width}x${item.height}${item.repeats > 1 ? ` ×${item.repeats}` : ""}` }), caption)));
    }
    filter.addEventListener("input", () => {
      const needle = filter.value.trim().toLowerCase();
      for (const card of gallery.children) card.hidden = Boolean(needle) && !card.dataset.tags.includes(needle);
    });
    const saveBtn = biButton("編集を新しいバージョンとして保存", "Save the edits as a new version", { class: "primary", disabled: true, testid: "img-caption-save" });
    saveBtn.addEventListener("click", () => withBusy(saveBtn, async () => {
      const output = await promptDialog("refine.output_name", `${name}-edit`, "common.ok", "img-edit-name");
      if (!output) return;
      const operations = [{ op: "edit_items", params: { edits: [...edits].map(([id, text]) => ({ id, text })) } }];
      const { job_id: jobId } = await post("/api/datasets/refine", { modality: m, dataset: name, output_name: output, operations });
      await waitJob(jobId);
      notify("success", `「${output}」を保存しました`, `Saved "${output}"`);
      await refresh();
      await open(output);
    }));
    const pager = h("div", { class: "row" });
    if (offset > 0) pager.append(biButton("前へ", "Previous", { testid: "img-page-prev", onclick: () => open(name, Math.max(0, offset - PAGE)).catch(showError) }));
    if (offset + PAGE < data.rows) pager.append(biButton("次へ", "Next", { testid: "img-page-next", onclick: () => open(name, offset + PAGE).catch(showError) }));
    pager.append(h("span", { class: "muted", text: `${offset + 1}-${Math.min(offset + PAGE, data.rows)} / ${data.rows}` }));
    viewer.hidden = false;
    viewer.replaceChildren(
      h("div", { class: "row between" }, h("h3", { testid: "img-dataset-title", text: name }),
        h("a", { href: `/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(name)}/archive`, download: `${name}.zip`, testid: "img-dataset-zip" }, bi("zip でダウンロード", "Download as zip"))),
      h("div", { class: "img-stats", testid: "img-dataset-stats" },
        h("div", {}, bi("枚数(繰り返し込み)", "Images (with repeats)", "h4"), h("p", { class: "mono", text: `${stats.images} (${stats.images_with_repeats})` })),
        stats.buckets ? h("div", {}, bi(`バケット (${stats.buckets.resolution}px)`, `Buckets (${stats.buckets.resolution}px)`, "h4"), barChart(stats.buckets, "img-stats-buckets")) : null,
        stats.resolution_histogram ? h("div", {}, bi("解像度(短辺)", "Resolution (short side)", "h4"), barChart(stats.resolution_histogram, "img-stats-resolution")) : null,
        stats.tag_frequency ? h("div", {}, bi("よく使われるタグ", "Frequent tags", "h4"), barChart({ label: stats.tag_frequency.label.slice(0, 12), counts: stats.tag_frequency.counts.slice(0, 12) }, "img-stats-tags")) : null),
      h("div", { class: "row" }, biField("タグで絞り込み", "Filter by tag", filter), saveBtn),
      gallery,
      pager,
    );
  }

  async function refresh() {
    const datasets = await listDatasets(m);
    tbody.replaceChildren();
    if (!datasets.length) {
      tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, bi("まだデータセットがありません", "No dataset yet"))));
      return;
    }
    for (const d of datasets) {
      const viewBtn = h("button", { type: "button", class: "small", i18n: "common.view", testid: `img-dataset-view-${d.name}` });
      viewBtn.addEventListener("click", () => withBusy(viewBtn, () => open(d.name)));
      const delBtn = h("button", { type: "button", class: "small danger", i18n: "common.delete", testid: `img-dataset-delete-${d.name}` });
      delBtn.addEventListener("click", () => withBusy(delBtn, async () => {
        if (!(await confirmDialog(`データセット「${d.name}」を削除しますか?`, `Delete the dataset "${d.name}"?`))) return;
        await del(`/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(d.name)}`);
        await refresh();
      }));
      tbody.append(h("tr", { testid: `img-dataset-row-${d.name}` }, h("td", { text: d.name }), h("td", { class: "num", text: d.rows ?? "-" }),
        h("td", { class: "num", text: formatBytes(d.size_bytes) }), h("td", { text: d.parent || "-" }), h("td", { text: formatDate(d.created_at) }),
        h("td", { class: "actions" }, viewBtn, delBtn)));
    }
  }

  return { onShow: refresh };
}
