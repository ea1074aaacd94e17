// データ錬成: operations and their parameters come from the plugin's declared schema
// (refine_operations[op].params_schema); the run is a job; its report is job.result; the lineage
// of versions comes from GET /api/datasets/{m}/{name}/lineage.
import { get, post } from "../api.js";
import { defaultName, field, formatDate, h, kvTable, newId, select, setBilingual, setI18n, withBusy } from "../dom.js";
import { createJobView } from "../jobview.js";
import { fillDatasetSelect, listDatasets, listModels, refOf } from "../lists.js";
import { readableValue } from "../readable.js";
import { schemaForm } from "../schema_form.js";

function operationsOf(info) {
  const ops = info.refine_operations || {};
  if (Array.isArray(ops)) return ops.map((o) => [o.op || o.name || o.id, o]);
  return Object.entries(ops);
}

function nameOfRef(ref) {
  return String(ref || "").split("/").pop();
}

export function mount(panel, app) {
  const m = app.modality;
  const info = app.info();
  const dataSel = select([], { testid: "refine-dataset" });
  const outName = h("input", { type: "text", testid: "refine-output-name", value: defaultName("refined"), autocomplete: "off" });
  const runBtn = h("button", { type: "submit", class: "primary", i18n: "refine.run", testid: "refine-run" });
  const report = h("div", { class: "card", hidden: true, testid: "refine-report" });
  const lineage = h("div", { testid: "refine-lineage" });
  const ops = [];
  // Model references for schema fields that take one ("models/<modality>/<name>", e.g. a local
  // Evol-Instruct generator): suggestions, the field still accepts any text.
  const modelList = h("datalist", { id: newId("refine-models"), testid: "refine-model-list" });

  const opsBox = h("div", { class: "ops", testid: "refine-ops" });
  const declared = operationsOf(info);
  if (!declared.length) opsBox.append(h("p", { class: "muted", i18n: "refine.no_ops" }));
  for (const [name, op] of declared) {
    const id = newId("op");
    const check = h("input", { type: "checkbox", id, testid: `refine-op-${name}` });
    const label = h("label", { for: id });
    setBilingual(label, op.label_ja || name, op.label_en || name);
    const form = schemaForm(op.params_schema, { idPrefix: `refine-${name}`, modelList: modelList.id, choices: { models: modelList } });
    const params = h("div", { class: "op-params", hidden: true }, form.root);
    const box = h("div", { class: "op" });
    // A large form (nested generator settings, checkboxes) gets the whole row once opened.
    const big = Boolean(form.root.querySelector("fieldset"));
    check.addEventListener("change", () => {
      params.hidden = !check.checked;
      box.classList.toggle("wide", check.checked && big);
    });
    const desc = op.description_ja || op.description_en ? h("small", { class: "hint" }) : null;
    if (desc) setBilingual(desc, op.description_ja || op.description_en, op.description_en || op.description_ja);
    box.append(...[h("div", { class: "field check" }, check, label), desc, form.empty ? null : params].filter(Boolean));
    opsBox.append(box);
    ops.push({ name, check, form });
  }

  const jobView = createJobView({
    prefix: "refine-",
    chart: false,
    training: false,
    cancellable: true,
    logOpen: false,
    onEnd: async (job) => {
      if (job.status === "completed") showReport(job.result || {});
      fillDatasetSelect(dataSel, await listDatasets(m));
      // Show where the new version sits in its family.
      if (job.result && job.result.path) dataSel.value = job.result.path;
      await showLineage();
    },
  });

  // What the run will write, said before it runs: a text dataset comes out in the OpenAI messages format.
  const formatNote = h("p", { class: "hint full", testid: "refine-format-note", hidden: true });
  let knownDatasets = [];
  function showFormatNote() {
    const chosen = knownDatasets.find((d) => refOf(d) === dataSel.value);
    const from = chosen && chosen.format;
    const writes = info.refine_output_format;
    // a preference set stays one (its pairs are refined as pairs)
    formatNote.hidden = !(writes && from && from !== writes && from !== "preference");
    if (!formatNote.hidden) setI18n(formatNote, "refine.format_changes", { from, to: writes });
  }
  dataSel.addEventListener("change", showFormatNote);

  const formEl = h(
    "form",
    { class: "card form-grid", novalidate: true },
    field("refine.dataset", dataSel),
    field("refine.output_name", outName),
    h("div", { class: "full" }, h("h3", { i18n: "refine.operations" }), opsBox),
    formatNote,
    h("div", { class: "row full" }, runBtn),
  );

  panel.append(h("h2", { i18n: "tab.refine" }), h("p", { class: "lead", i18n: "refine.lead" }), formEl, jobView.root, report, h("div", { class: "card" }, h("h3", { i18n: "refine.lineage" }), lineage), modelList);

  /** An operation by its label in the UI's language (its id beside it, small). */
  function opLabel(op) {
    const found = declared.find(([name]) => name === op);
    const label = h("span", {});
    setBilingual(label, (found && found[1].label_ja) || op, (found && found[1].label_en) || op);
    return h("span", {}, label, " ", h("code", { class: "muted small-text", text: op }));
  }

  function perOperationTable(rows) {
    const body = h("tbody");
    for (const r of rows) {
      // What an operation adds to its entry (Evol-Instruct: items, evolved, methods, eliminated...).
      const { op, params: _params, rows_in: rowsIn, rows_out: rowsOut, removed, changed, ...extra } = r;
      body.append(
        h(
          "tr",
          { testid: `refine-op-result-${op}` },
          h("td", {}, opLabel(op)),
          h("td", { class: "num", text: rowsIn ?? "-" }),
          h("td", { class: "num", text: rowsOut ?? "-" }),
          h("td", {}, kvTable(removed || {})),
          h("td", {}, kvTable(changed || {})),
          h("td", {}, kvTable(extra, "refine-op-details")),
        ),
      );
    }
    const head = h("thead", {}, h("tr", {}, ["refine.op", "refine.rows_in", "refine.rows_out", "refine.removed", "refine.changed", "refine.details"].map((k) => h("th", { scope: "col", i18n: k }))));
    return h("div", { class: "table-wrap" }, h("table", { class: "list per-operation", testid: "refine-per-operation" }, head, body));
  }

  function showReport(result) {
    report.hidden = false;
    const { examples, removed, per_operation: perOp, ...rest } = result;
    const parts = [h("h3", { i18n: "refine.report" }), kvTable(rest, "refine-report-table", { json: true })];
    if (removed && Object.keys(removed).length) parts.push(h("h4", { i18n: "refine.removed" }), kvTable(removed, "refine-removed"));
    if (Array.isArray(perOp) && perOp.length) parts.push(h("h4", { i18n: "refine.per_operation" }), perOperationTable(perOp));
    // Examples come as a list, or grouped by reason ({reason: [rows]}).
    const lines = [];
    const line = (e) => (typeof e === "string" ? e : JSON.stringify(e, null, 0));
    if (Array.isArray(examples)) lines.push(...examples.map(line));
    else if (examples && typeof examples === "object") {
      for (const [reason, items] of Object.entries(examples)) lines.push(`[${reason}]`, ...(Array.isArray(items) ? items : [items]).map((e) => `  ${line(e)}`));
    }
    if (lines.length) parts.push(h("h4", { i18n: "refine.examples" }), h("pre", { class: "log", testid: "refine-examples", text: lines.join("\n") }));
    report.replaceChildren(...parts);
  }

  async function showLineage() {
    const name = nameOfRef(dataSel.value);
    if (!name) {
      lineage.replaceChildren(h("p", { class: "muted", i18n: "datasets.empty" }));
      return;
    }
    const data = await get(`/api/datasets/${encodeURIComponent(m)}/${encodeURIComponent(name)}/lineage`);
    const versions = data.versions || [];
    const list = h("ol", { class: "lineage" });
    for (const v of versions) {
      const opsText = (v.operations || (v.operation ? [v.operation] : [])).map((o) => (typeof o === "string" ? o : o.op)).join(" → ");
      list.append(
        h(
          "li",
          { testid: "lineage-version" },
          h("strong", { text: v.name }),
          v.parent ? h("span", { class: "muted", text: ` ← ${v.parent}` }) : null,
          opsText ? h("div", { class: "mono", text: opsText }) : null,
          v.counts ? h("div", { class: "muted", bi: { ja: readableValue("counts", v.counts, "ja"), en: readableValue("counts", v.counts, "en") } }) : null,
          v.report && v.report.rows_in !== undefined ? h("div", { class: "muted", text: `${v.report.rows_in} → ${v.report.rows_out}` }) : null,
          v.created_at || v.job_id ? h("div", { class: "muted", text: `${formatDate(v.created_at)}${v.job_id ? ` · ${v.job_id}` : ""}` }) : null,
        ),
      );
    }
    lineage.replaceChildren(versions.length ? list : h("p", { class: "muted", i18n: "refine.no_lineage" }));
  }

  dataSel.addEventListener("change", () => withBusy(null, showLineage));

  formEl.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(runBtn, async () => {
      const operations = ops.filter((o) => o.check.checked).map((o) => ({ op: o.name, params: o.form.values() }));
      const { job_id: jobId } = await post("/api/datasets/refine", { modality: m, dataset: dataSel.value, operations, output_name: outName.value.trim() });
      report.hidden = true;
      jobView.follow(jobId);
      outName.value = defaultName("refined");
    });
  });

  async function refresh() {
    const [datasets, models] = await Promise.all([listDatasets(m), listModels(m)]);
    modelList.replaceChildren(...models.map((model) => h("option", { value: refOf(model), text: model.name })));
    fillDatasetSelect(dataSel, datasets);
    knownDatasets = datasets;
    showFormatNote();
    await showLineage();
  }

  return { onShow: refresh };
}
