// The regression suite's preference check, before / after: on held-out preference pairs, how often and by how
// much the model prefers the chosen answer, for the base (before training: the same model with the adapter
// disabled) and for the adapter (after). Shown in the 履歴 tab for an eval job and for an adapter's latest
// eval, in words and in a table, in the UI's language (both kept, so the language switch needs no reload).
import { formatNumber, h, setI18n } from "./dom.js";

const pct = (x) => `${Math.round(Number(x) * 100)}%`;
const signed = (x) => `${Number(x) > 0 ? "+" : ""}${formatNumber(Number(x), 3)}`;

/** The figures of a summary row that carries them (an eval with a preference dataset), else null. */
export function preferenceFigures(summary) {
  const s = summary && summary.adapter;
  if (!s || typeof s.preference_accuracy !== "number") return null;
  const before = { accuracy: s.base_preference_accuracy ?? s.preference_accuracy, margin: s.base_preference_margin ?? s.preference_margin };
  return { rows: s.rows, before, after: { accuracy: s.preference_accuracy, margin: s.preference_margin } };
}

/** The before / after block, or null when the summary has no preference check. */
export function renderPreferenceCheck(summary, opts = {}) {
  const f = preferenceFigures(summary);
  if (!f) return null;
  const n = Number(f.rows) || 0;
  const count = (acc) => Math.round(Number(acc) * n);
  const words = setI18n(h("p", { testid: "pref-check-words" }), "eval.pref_words", {
    rows: n,
    before_n: count(f.before.accuracy),
    before_pct: pct(f.before.accuracy),
    after_n: count(f.after.accuracy),
    after_pct: pct(f.after.accuracy),
    before_margin: signed(f.before.margin),
    after_margin: signed(f.after.margin),
  });
  const row = (key, labelKey, before, after, show, change) =>
    h(
      "tr",
      { testid: `pref-check-${key}`, "data-before": String(before), "data-after": String(after) },
      h("th", { scope: "row", i18n: labelKey }),
      h("td", { class: "num mono", testid: "pref-before", text: show(before) }),
      h("td", { class: "num mono", testid: "pref-after", text: show(after) }),
      h("td", { class: "num mono", testid: "pref-change", text: change(after - before) }),
    );
  const table = h(
    "table",
    { class: "list summary-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col", i18n: "eval.pref_figure" }), h("th", { scope: "col", class: "num", i18n: "eval.pref_before" }), h("th", { scope: "col", class: "num", i18n: "eval.pref_after" }), h("th", { scope: "col", class: "num", i18n: "eval.pref_change" }))),
    h(
      "tbody",
      {},
      row("accuracy", "eval.pref_accuracy", f.before.accuracy, f.after.accuracy, pct, (d) => `${d > 0 ? "+" : ""}${Math.round(d * 100)} pt`),
      row("margin", "eval.pref_margin", f.before.margin, f.after.margin, (x) => formatNumber(x, 3), signed),
    ),
  );
  return h("section", { class: "pref-check", testid: opts.testid || "pref-check" }, h("h5", { i18n: "eval.pref_title" }), words, table);
}
