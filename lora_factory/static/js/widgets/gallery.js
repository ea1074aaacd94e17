// A media gallery: images and audio files with their caption and metadata (generation results,
// training samples, regression outputs). Items: {kind: "image"|"audio", url, caption?, label?, meta?}.
import { h, kvTable } from "../dom.js";

export function mediaTile(item, testid = "media-item") {
  const kind = item.kind || item.type || (/\.(wav|flac|ogg|mp3)$/i.test(item.url || "") ? "audio" : "image");
  const media =
    kind === "audio"
      ? h("audio", { controls: true, preload: "none", src: item.url, testid: `${testid}-audio` })
      : h("a", { href: item.url, target: "_blank", rel: "noopener" }, h("img", { src: item.url, alt: item.caption || item.label || "", loading: "lazy", testid: `${testid}-image` }));
  const caption = h("figcaption", {});
  if (item.label) caption.append(h("strong", { class: "small-text", text: `${item.label} ` }));
  if (item.caption) caption.append(h("span", { text: item.caption }));
  const meta = item.meta && Object.keys(item.meta).length ? h("details", { class: "media-meta" }, h("summary", { i18n: "media.settings" }), kvTable(flatten(item.meta))) : null;
  const download = item.url ? h("a", { href: item.url, download: item.name || "", class: "small-text", i18n: "media.download" }) : null;
  return h("figure", { class: `media-tile media-${kind}`, testid, "data-kind": kind }, media, caption, h("div", { class: "row" }, download), meta);
}

function flatten(meta) {
  const out = {};
  for (const [k, v] of Object.entries(meta || {})) out[k] = v !== null && typeof v === "object" ? JSON.stringify(v) : v;
  return out;
}

/**
 * @param {object} opts testid (the grid's; each tile is `<testid>-item`), emptyKey (i18n key shown when empty)
 * @returns {{root, add(item), set(items), clear(), count(): number}}
 */
export function createMediaGallery(opts = {}) {
  const testid = opts.testid || "media-gallery";
  const grid = h("div", { class: "media-grid", testid });
  const empty = opts.emptyKey ? h("p", { class: "muted", i18n: opts.emptyKey }) : null;
  const root = h("div", { class: "media-gallery" }, empty, grid);
  let n = 0;
  const sync = () => {
    if (empty) empty.hidden = n > 0;
    grid.dataset.count = String(n);
  };
  sync();
  return {
    root,
    add(item) {
      grid.prepend(mediaTile(item, `${testid}-item`));
      n += 1;
      sync();
    },
    set(items) {
      grid.replaceChildren(...(items || []).map((it) => mediaTile(it, `${testid}-item`)));
      n = (items || []).length;
      sync();
    },
    clear() {
      grid.replaceChildren();
      n = 0;
      sync();
    },
    count: () => n,
  };
}
