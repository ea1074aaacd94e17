// 画像の学習: the shell's training form and live job view, plus the sample images the run renders
// every N steps (fixed prompts and seed), shown as they arrive: one row per step, so step 100 and
// step 500 compare at a glance.
import { get } from "../../api.js";
import { h } from "../../dom.js";
import * as generic from "../train.js";
import { bi, ensureStyles } from "./common.js";

export function mount(panel, app) {
  ensureStyles();
  const inner = generic.mount(panel, app);
  const rows = h("div", { class: "img-sample-rows", testid: "img-samples" });
  const empty = bi("サンプル画像は学習中に N ステップごとにここへ表示されます(sample_every_n_steps)。",
    "Sample images appear here every N steps while training (sample_every_n_steps).", "p", { class: "muted" });
  const card = h("div", { class: "card", testid: "img-samples-card" }, bi("サンプル画像", "Sample images", "h3"), empty, rows);
  panel.append(card);

  let source = null;
  let jobId = null;
  const seen = new Set();

  function add(sample) {
    if (!sample || !sample.url || seen.has(sample.url)) return;
    seen.add(sample.url);
    empty.hidden = true;
    let row = rows.querySelector(`[data-step="${sample.step}"]`);
    if (!row) {
      row = h("div", { class: "img-sample-row", "data-step": String(sample.step), testid: "img-sample-row" },
        h("span", { class: "mono img-sample-step", text: `step ${sample.step}` }), h("div", { class: "img-sample-images" }));
      rows.prepend(row);
    }
    row.lastChild.append(h("figure", { class: "img-card small" },
      h("img", { src: sample.url, alt: sample.caption || `step ${sample.step}`, loading: "lazy", class: "img-thumb", testid: "img-sample" }),
      h("figcaption", { class: "muted", text: sample.caption || "" })));
  }

  async function follow(id) {
    if (!id || id === jobId) return;
    jobId = id;
    if (source) source.close();
    seen.clear();
    rows.replaceChildren();
    empty.hidden = false;
    try {
      for (const s of (await get(`/api/jobs/${encodeURIComponent(id)}/samples`)).samples || []) add(s);
    } catch {
      // a job of another kind, or gone: nothing to show
    }
    if (typeof EventSource === "undefined") return;
    source = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
    source.addEventListener("sample", (ev) => add(JSON.parse(ev.data)));
    source.addEventListener("end", () => source && source.close());
    source.addEventListener("error", () => source && source.close());
  }

  // The shell's job view shows the id of the job it follows: follow the same one.
  const jobIdEl = panel.querySelector("[data-testid='job-id']");
  if (jobIdEl) new MutationObserver(() => follow(jobIdEl.textContent.trim())).observe(jobIdEl, { childList: true, characterData: true, subtree: true });

  return {
    ...inner,
    follow(id) {
      if (inner.follow) inner.follow(id);
      follow(id);
    },
    destroy() {
      if (source) source.close();
      if (inner.destroy) inner.destroy();
    },
  };
}
