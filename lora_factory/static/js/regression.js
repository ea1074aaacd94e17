// 回帰テスト (regression suites) of an adapter, shown in the 履歴 tab: a JSONL suite checked line
// by line before it is sent (POST /api/eval/start), the eval job followed live, and its results
// side by side for the adapter, its base and its previous version. Also renders what is stored
// about an adapter: past eval summaries and its lineage (GET /api/adapters/{m}/{name}).
import { ApiError, get, post } from "./api.js";
import { field, formatDate, formatNumber, h, notifyKey, setBilingual, showError, withBusy } from "./dom.js";
import { t } from "./i18n.js";
import { fieldLabel, readableValue } from "./readable.js";
import { createJobView } from "./jobview.js";
import { renderPreferenceCheck } from "./pref_check.js";
import { fillDatasetSelect, listDatasets } from "./lists.js";
import { mediaTile } from "./widgets/gallery.js";

/** The order (and the labels) of the targets an eval job answers with. */
const TARGETS = [
  ["adapter", "eval.target_adapter"],
  ["base", "eval.target_base"],
  ["previous", "eval.target_previous"],
];
const SUMMARY_COUNTS = new Set(["passed", "total", "pass_rate"]);
const ROLE_KEYS = { base_model: "eval.role_base_model", model: "eval.role_model", dataset: "eval.role_dataset", adapter: "eval.role_adapter", source: "eval.role_source", parent: "eval.role_source" };
const CHECK_KEYS = { contains: "eval.check_contains", not_contains: "eval.check_not_contains", regex: "eval.check_regex", max_length: "eval.check_max_length", min_length: "eval.check_min_length" };

export const EXAMPLE_SUITE = ['{"prompt": "日本の首都は?", "contains": ["東京"]}', '{"prompt": "こんにちは", "checks": [{"type": "max_length", "value": 200}]}'].join("\n");

/**
 * Parse the suite textarea: one JSON object a line, blank lines skipped. Returns {cases, errors}
 * with errors = [{line, reason}] numbered like the user's text (the server answers the same shape).
 */
export function parseSuiteText(text) {
  const cases = [];
  const errors = [];
  String(text || "")
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.trim();
      if (!line) return;
      let value;
      try {
        value = JSON.parse(line);
      } catch (err) {
        errors.push({ line: i + 1, reason: t("eval.err_json", { msg: err.message }) });
        return;
      }
      if (!value || typeof value !== "object" || Array.isArray(value)) errors.push({ line: i + 1, reason: t("eval.err_object") });
      else if (!value.prompt && !value.messages) errors.push({ line: i + 1, reason: t("eval.err_prompt") });
      else cases.push(value);
    });
  if (!cases.length && !errors.length) errors.push({ line: 1, reason: t("eval.err_empty") });
  return { cases, errors };
}

function ratio(s) {
  if (!s || s.total === undefined) return "-";
  return `${s.passed}/${s.total}`;
}

function rateBar(s) {
  const rate = s && typeof s.pass_rate === "number" ? s.pass_rate : null;
  if (rate === null) return h("span", { class: "muted", text: "-" });
  const pct = Math.round(rate * 100);
  return h("span", { class: "rate" }, h("span", { class: "rate-bar", "aria-hidden": "true" }, h("span", { style: `width:${pct}%` })), h("span", { class: "mono", text: `${pct}%` }));
}

/** The pass counts of each target (job.result.summary or a stored eval's summary) as a table. */
export function renderSummary(summary, opts = {}) {
  const labels = TARGETS.filter(([key]) => summary && summary[key]);
  const extra = [...new Set(labels.flatMap(([key]) => Object.keys(summary[key]).filter((k) => !SUMMARY_COUNTS.has(k))))];
  const head = h("tr", {}, h("th", { scope: "col", i18n: "eval.target" }), h("th", { scope: "col", class: "num", i18n: "eval.passed" }), h("th", { scope: "col", i18n: "eval.pass_rate" }), extra.map((k) => h("th", { scope: "col", bi: { ja: fieldLabel(k, "ja"), en: fieldLabel(k, "en") } })));
  const body = h("tbody");
  for (const [key, labelKey] of labels) {
    const s = summary[key];
    const name = opts.names && opts.names[key] ? h("code", { class: "muted small-text", text: ` ${opts.names[key]}` }) : null;
    body.append(
      h(
        "tr",
        { testid: `eval-summary-${key}`, "data-passed": String(s.passed ?? ""), "data-total": String(s.total ?? "") },
        h("th", { scope: "row" }, h("span", { i18n: labelKey }), name),
        h("td", { class: "num mono", text: ratio(s) }),
        h("td", {}, rateBar(s)),
        extra.map((k) => h("td", { class: "num", bi: { ja: readableValue(k, s[k], "ja"), en: readableValue(k, s[k], "en") } })),
      ),
    );
  }
  return h("table", { class: "list summary-table", testid: opts.testid }, h("thead", {}, head), body);
}

function checkChip(c) {
  const key = CHECK_KEYS[c.type];
  const chip = h("span", { class: `check ${c.passed ? "check-pass" : "check-fail"}`, "data-passed": String(Boolean(c.passed)) });
  // a plugin's check kinds (clip_score ...) carry a score instead of a value
  const shown = c.value ?? (c.score !== undefined && c.score !== null ? formatNumber(c.score, 3) : "");
  chip.append(c.passed ? "✓ " : "✗ ", h("span", key ? { i18n: key } : { text: c.type }), shown === "" ? "" : `: ${shown}`);
  return chip;
}

/** Every case with each target's output and checks, side by side (job.result.targets.<label>.cases). */
export function renderCases(targets) {
  const labels = TARGETS.filter(([key]) => targets && targets[key] && Array.isArray(targets[key].cases));
  if (!labels.length) return h("p", { class: "muted", i18n: "eval.no_cases" });
  const count = Math.max(...labels.map(([key]) => targets[key].cases.length));
  const body = h("tbody");
  for (let i = 0; i < count; i += 1) {
    const first = labels.map(([key]) => targets[key].cases[i]).find(Boolean) || {};
    body.append(
      h(
        "tr",
        { testid: "eval-case" },
        h("td", { class: "num muted", text: String(i + 1) }),
        h("td", { class: "case-prompt" }, first.name ? h("strong", { class: "small-text", text: `${first.name} ` }) : null, first.prompt || ""),
        labels.map(([key]) => {
          const c = targets[key].cases[i];
          if (!c) return h("td", { class: "muted", text: "-" });
          return h(
            "td",
            { class: `case-cell ${c.passed ? "is-pass" : "is-fail"}`, "data-target": key, "data-passed": String(Boolean(c.passed)) },
            (c.media || []).length
              ? h("div", { class: "case-media" }, c.media.map((item) => mediaTile(item, "eval-case-media")))
              : h("div", { class: "case-output", testid: "eval-case-output", text: c.output || t("infer.empty_answer") }),
            h("div", { class: "checks" }, (c.checks || []).map(checkChip)),
          );
        }),
      ),
    );
  }
  const head = h("tr", {}, h("th", { scope: "col", text: "#" }), h("th", { scope: "col", i18n: "eval.prompt" }), labels.map(([, labelKey]) => h("th", { scope: "col", i18n: labelKey })));
  return h("div", { class: "table-wrap" }, h("table", { class: "list cases-table", testid: "eval-cases" }, h("thead", {}, head), body));
}

/** The eval results stored for an adapter (newest first), each with its pass counts. */
export function renderStoredEvals(evals) {
  const list = (Array.isArray(evals) ? evals : []).slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  if (!list.length) return h("p", { class: "muted", testid: "adapter-evals", i18n: "history.no_evals" });
  const body = h("tbody");
  for (const e of list) {
    const s = e.summary || {};
    body.append(
      h(
        "tr",
        { testid: "adapter-eval-row" },
        h("td", { class: "nowrap" }, formatDate(e.created_at), h("br"), h("code", { class: "small-text", text: e.job_id || "-" })),
        TARGETS.map(([key]) => h("td", { class: "num mono", "data-target": key, text: ratio(s[key]) })),
      ),
    );
  }
  const head = h("tr", {}, h("th", { scope: "col", i18n: "history.created" }), TARGETS.map(([, k]) => h("th", { scope: "col", class: "num", i18n: k })));
  return h("div", { class: "table-wrap", testid: "adapter-evals" }, h("table", { class: "list" }, h("thead", {}, head), body));
}

function lineageNode(node, role) {
  const a = node || {};
  const kind = role || a.kind || "?";
  const roleEl = h("span", { class: "badge role", i18n: ROLE_KEYS[kind], text: ROLE_KEYS[kind] ? undefined : kind });
  const label = a.deleted ? h("span", { class: "muted" }, h("code", { text: a.id }), " ", h("span", { i18n: "eval.deleted" })) : h("code", { class: "path", text: a.path || a.name || a.id });
  const li = h("li", { testid: role ? "lineage-parent" : "lineage-root", "data-role": role || a.kind || "" }, roleEl, " ", label, a.created_at ? h("span", { class: "muted small-text", text: ` ${formatDate(a.created_at)}` }) : null);
  const parents = Array.isArray(a.parents) ? a.parents : [];
  if (parents.length) li.append(h("ul", { class: "lineage-tree" }, parents.map((p) => lineageNode(p.artifact, p.role))));
  return li;
}

/** An artifact's ancestry (lineage.parents[].role / artifact.path, recursively) as a tree. */
export function renderLineage(lineage) {
  if (!lineage || !lineage.id) return h("p", { class: "muted", testid: "adapter-lineage", i18n: "refine.no_lineage" });
  return h("ul", { class: "lineage-tree root", testid: "adapter-lineage" }, lineageNode(lineage, null));
}

/**
 * The regression card of the 履歴 tab: open(adapter) shows the adapter's lineage and stored evals
 * next to a suite form; a run is followed live and its results shown below. onDone(job) lets the
 * tab refresh its adapter list (the eval count) when a run ends.
 */
export function createEvalPanel(app, onDone) {
  const title = h("h3", {});
  const closeBtn = h("button", { type: "button", class: "small", i18n: "common.close", testid: "eval-close" });
  const lineageBox = h("div", { class: "lineage-box" });
  const storedBox = h("div", {});
  const suite = h("textarea", { class: "mono", rows: 6, testid: "eval-suite", spellcheck: "false", value: EXAMPLE_SUITE });
  const maxTokens = h("input", { type: "number", min: 1, max: 4096, value: 64, testid: "eval-max-tokens" });
  const dataset = h("select", { testid: "eval-dataset" });
  const start = h("button", { type: "submit", class: "primary", i18n: "eval.start", testid: "eval-start" });
  const errorBox = h("div", { class: "dataset-error", hidden: true, role: "alert", testid: "eval-suite-error" });
  const result = h("div", { class: "eval-result", hidden: true, testid: "eval-result" });
  let adapter = null;
  let jobNames = {};

  const view = createJobView({
    prefix: "eval-",
    chart: false,
    training: false,
    cancellable: true,
    logOpen: false,
    onEnd: (job) => {
      if (job.status === "completed") {
        showResult(job);
        notifyKey("success", "eval.done", { name: adapter ? adapter.name : "" });
      }
      if (adapter) loadDetail(adapter).catch(showError);
      if (onDone) onDone(job);
    },
  });

  function showErrors(errors, fromServer) {
    errorBox.replaceChildren(
      h("strong", { i18n: fromServer ? "eval.server_rejected" : "eval.suite_invalid" }),
      h(
        "ul",
        {},
        errors.slice(0, 20).map((e) => h("li", { testid: "eval-suite-error-line" }, h("span", { class: "line-no", text: `${t("common.line")} ${e.line}` }), `: ${e.reason}`)),
      ),
    );
    errorBox.hidden = false;
  }

  function showResult(job) {
    const r = job.result || {};
    const spec = job.spec || {};
    const base = (p) => (p ? String(p).split(/[\\/]/).filter(Boolean).pop() : null);
    jobNames = { adapter: base(spec.adapter_ref || spec.adapter), base: base(spec.base_model), previous: base(spec.previous_adapter) };
    result.replaceChildren(
      ...[
        h("h4", { i18n: "eval.results" }),
        renderSummary(r.summary || {}, { testid: "eval-summary", names: jobNames }),
        renderPreferenceCheck(r.summary, { testid: "eval-pref-check" }),
        r.targets && r.targets.previous ? null : h("p", { class: "hint", testid: "eval-no-previous", i18n: "eval.no_previous" }),
        h("h4", { i18n: "eval.cases" }),
        renderCases(r.targets || {}),
      ].filter(Boolean),
    );
    result.hidden = false;
  }

  async function loadDetail(a) {
    const data = await get(`/api/adapters/${encodeURIComponent(app.modality)}/${encodeURIComponent(a.name)}`);
    lineageBox.replaceChildren(h("h4", { i18n: "refine.lineage" }), renderLineage(data.lineage));
    storedBox.replaceChildren(h("h4", { i18n: "history.evals" }), renderStoredEvals(data.evals));
  }

  const form = h(
    "form",
    { class: "eval-form", novalidate: true },
    field("eval.suite", suite, "eval.suite_hint"),
    errorBox,
    h("div", { class: "row wrap eval-options" }, field("infer.max_new_tokens", maxTokens), field("eval.dataset", dataset, "eval.dataset_hint")),
    h("div", { class: "row" }, start),
  );
  const root = h(
    "section",
    { class: "card eval-panel", hidden: true, testid: "eval-panel", "aria-live": "polite" },
    h("div", { class: "row between" }, title, closeBtn),
    h("div", { class: "two-col eval-cols" }, h("div", {}, h("h4", { i18n: "eval.new_run" }), form), h("div", {}, storedBox, lineageBox)),
    view.root,
    result,
  );

  suite.addEventListener("input", () => {
    errorBox.hidden = true;
  });
  closeBtn.addEventListener("click", () => {
    view.stop();
    root.hidden = true;
    adapter = null;
  });

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const { cases, errors } = parseSuiteText(suite.value);
    if (errors.length) {
      showErrors(errors, false);
      suite.focus();
      return;
    }
    errorBox.hidden = true;
    withBusy(start, async () => {
      const body = { modality: app.modality, adapter: adapter.name, suite: cases, params: { max_new_tokens: Number(maxTokens.value) || 64 } };
      if (dataset.value) body.dataset = dataset.value;
      let jobId;
      try {
        ({ job_id: jobId } = await post("/api/eval/start", body));
      } catch (err) {
        if (err instanceof ApiError && err.detail && Array.isArray(err.detail.errors)) showErrors(err.detail.errors, true);
        throw err;
      }
      result.hidden = true;
      view.follow(jobId);
    });
  });

  /** Show the card for an adapter (from its row's 回帰テスト button). */
  async function open(a) {
    if (adapter && adapter.name !== a.name) view.stop();
    if (!adapter || adapter.name !== a.name) {
      view.root.hidden = true;
      result.hidden = true;
      errorBox.hidden = true;
    }
    adapter = a;
    setBilingual(title, `回帰テスト: ${a.name}`, `Regression tests: ${a.name}`);
    title.dataset.adapter = a.name;
    root.hidden = false;
    const [datasets] = await Promise.all([listDatasets(app.modality), loadDetail(a)]);
    fillDatasetSelect(dataset, datasets, "eval.no_dataset");
    dataset.value = "";
    root.scrollIntoView({ block: "start", behavior: "smooth" });
    suite.focus({ preventScroll: true });
  }

  return { root, open };
}
