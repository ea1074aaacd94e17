// 画像データセット: the shell's datasets tab (zip / files / folder in, refused files named, the
// folder browser with thumbnails and captions edited in place, saved as a new version), plus what a
// LoRA trainer looks at before training: buckets at 512 px, short-side histogram, caption lengths,
// the most frequent tags, and a tag filter over the thumbnails.
import { get } from "/static/js/api.js";
import { h, showError } from "/static/js/dom.js";
import * as generic from "/static/js/tabs/datasets.js";
import { bi, biField, ensureStyles } from "./common.js";

function barChart(stat, testid) {
  const box = h("div", { class: "img-bars", testid });
  const max = Math.max(1, ...(stat.counts || []));
  (stat.label || []).forEach((label, i) => {
    const n = stat.counts[i];
    box.append(h("div", { class: "img-bar" }, h("span", { class: "img-bar-label mono", text: label, title: label }),
      h("span", { class: "img-bar-fill", style: `width:${Math.round((100 * n) / max)}%` }), h("span", { class: "mono", text: String(n) })));
  });
  return box;
}

export function renderImageStats(stats) {
  const top = stats.tag_frequency || { label: [], counts: [] };
  return [
    h("div", {}, bi("枚数(繰り返し込み)", "Images (with repeats)", "h4"),
      h("p", { class: "mono", testid: "img-stats-count", text: `${stats.images} (${stats.images_with_repeats})` }),
      bi(`キャプションなし: ${(stats.uncaptioned || []).length}`, `Without caption: ${(stats.uncaptioned || []).length}`, "p", { class: "muted small-text" })),
    stats.buckets ? h("div", {}, bi(`バケット (${stats.buckets.resolution}px)`, `Buckets (${stats.buckets.resolution}px)`, "h4"), barChart(stats.buckets, "img-stats-buckets")) : null,
    stats.resolution_histogram ? h("div", {}, bi("解像度(短辺 px)", "Resolution (short side, px)", "h4"), barChart(stats.resolution_histogram, "img-stats-resolution")) : null,
    stats.caption_length_histogram ? h("div", {}, bi("タグ数 / キャプション", "Tags per caption", "h4"), barChart(stats.caption_length_histogram, "img-stats-caption")) : null,
    h("div", {}, bi("よく使われるタグ", "Frequent tags", "h4"), barChart({ label: top.label.slice(0, 12), counts: top.counts.slice(0, 12) }, "img-stats-tags")),
  ];
}

export function mount(panel, app) {
  ensureStyles();
  const inner = generic.mount(panel, app);
  const statsBox = h("div", { class: "img-stats", testid: "img-dataset-stats" });
  const filter = h("input", { type: "search", testid: "img-tag-filter", autocomplete: "off" });
  const card = h("div", { class: "img-stats-card", hidden: true, testid: "img-stats-card" }, bi("画像の統計", "Image statistics", "h4"), statsBox,
    biField("タグで絞り込み", "Filter by tag", filter, "キャプションにこの文字を含む画像だけ表示", "show only the images whose caption contains this"));
  const browserTitle = panel.querySelector("[data-testid='dataset-browser-title']");
  const browser = panel.querySelector("[data-testid='dataset-browser']");
  if (browser) browser.before(card);
  const flat = panel.querySelector("[data-testid='dataset-stats']");
  let shown = null;

  async function showStats(name) {
    if (!name || name === shown) return;
    shown = name;
    filter.value = "";
    const data = await get(`/api/datasets/${encodeURIComponent(app.modality)}/${encodeURIComponent(name)}?rows=1`);
    statsBox.replaceChildren(...renderImageStats(data.stats || {}));
    card.hidden = false;
    if (flat) flat.hidden = true; // the same numbers, drawn as bars above
  }

  filter.addEventListener("input", () => {
    const needle = filter.value.trim().toLowerCase();
    for (const tile of panel.querySelectorAll("[data-testid='dataset-browser-item']")) {
      const text = (tile.querySelector("textarea, .item-text") || {}).value ?? tile.textContent;
      tile.hidden = Boolean(needle) && !String(text).toLowerCase().includes(needle);
    }
  });
  if (browserTitle) {
    new MutationObserver(() => {
      shown = null;
      showStats(browserTitle.textContent.trim()).catch(showError);
    }).observe(browserTitle, { childList: true, characterData: true, subtree: true });
  }
  return inner;
}
