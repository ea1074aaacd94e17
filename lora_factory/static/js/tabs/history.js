// 履歴: every job with filters (kind, status, modality), duration, final loss; open the log,
// re-run, delete with confirmation; the adapters with their lineage and regression results, a
// regression run (eval job) and a merge into a standalone model (merge job), both followed live.
import { TERMINAL, del, get, post } from "../api.js";
import { confirmDialog, field, formatDate, formatDuration, formatNumber, h, kvTable, notify, notifyKey, promptDialog, select, setBilingual, setI18n, showModal, withBusy } from "../dom.js";
import { createJobView, statusKey } from "../jobview.js";
import { listAdapters } from "../lists.js";
import { schemaForm } from "../schema_form.js";
import { fieldLabel, jsonToggle } from "../readable.js";
import { renderPreferenceCheck } from "../pref_check.js";
import { createEvalPanel, renderLineage, renderStoredEvals, renderSummary } from "../regression.js";

/** Training metrics under readable labels in the UI language (the labels live in readable.js). */
export function labelled(metrics) {
  return Object.fromEntries(Object.entries(metrics).map(([k, v]) => [fieldLabel(k), v]));
}

const KINDS = ["download", "refine", "train", "eval", "merge", "export"];
const STATUSES = ["queued", "running", "completed", "failed", "canceled", "interrupted"];

// while a job of the list runs, the list refreshes itself this often (as the job card does)
const LIVE_MS = 2000;

/** The kind as people say it: creating the tiny demo model is not a download. */
export function kindKey(job) {
  if (job.kind === "download" && job.spec && job.spec.source === "tiny") return "kind.tiny";
  if (job.kind === "download" && job.spec && job.spec.source_path) return "kind.import";
  return `kind.${job.kind}`;
}

/** What a job is about, for its row: its output and, for training / refining, the dataset it read. */
function jobSubject(job) {
  const spec = job.spec || {};
  const out = job.output_name || spec.output_name || spec.name || spec.repo_id || spec.adapter || "";
  const ref = spec.dataset_ref || spec.dataset || "";
  const dataset = ref ? String(ref).split(/[\\/]/).pop() : "";
  return { out, dataset };
}

function finalLoss(job) {
  const r = job.result || {};
  return r.final_loss ?? r.train_loss ?? job.loss ?? (job.metrics && job.metrics.loss);
}

export function mount(panel, app) {
  const kindSel = select([{ value: "", i18n: "common.all" }, ...KINDS.map((k) => ({ value: k, i18n: `kind.${k}` }))], { testid: "history-kind" });
  const statusSel = select([{ value: "", i18n: "common.all" }, ...STATUSES.map((s) => ({ value: s, i18n: statusKey(s) }))], { testid: "history-status" });
  const modalitySel = select([{ value: "", i18n: "common.all" }, ...app.modalities.map((mm) => ({ value: mm.id, bi: { ja: mm.label_ja || mm.id, en: mm.label_en || mm.id } }))], { testid: "history-modality" });
  // the jobs follow the modality chosen at the top, as the adapters do ("すべて" shows every one)
  modalitySel.value = app.modality || "";
  const reload = h("button", { type: "button", i18n: "common.reload", testid: "history-reload" });
  const tbody = h("tbody", { testid: "history-list" });
  const adaptersBody = h("tbody", { testid: "adapter-list" });
  const evalPanel = createEvalPanel(app, () => withBusy(null, loadAdapters));
  const mergeView = createJobView({
    prefix: "merge-",
    chart: false,
    training: false,
    cancellable: true,
    logOpen: false,
    onEnd: (job) => {
      if (job.status === "completed") notifyKey("success", "history.merge_done", { name: job.output_name || (job.spec || {}).output_name || "" });
      withBusy(null, loadJobs);
    },
  });

  const heads = (keys) => h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col", i18n: k }))));
  panel.append(
    h("h2", { i18n: "tab.history" }),
    h("div", { class: "card" }, h("div", { class: "filters" }, field("history.kind", kindSel), field("history.status", statusSel), field("history.modality", modalitySel), reload)),
    h(
      "div",
      { class: "card" },
      h("h3", { i18n: "history.jobs" }),
      h("div", { class: "table-wrap" }, h("table", { class: "list" }, heads(["history.job", "history.kind", "history.modality", "history.status", "history.created", "history.duration", "history.final_loss", "common.actions"]), tbody)),
    ),
    h(
      "div",
      { class: "card" },
      h("h3", { i18n: "history.adapters" }),
      h("div", { class: "table-wrap" }, h("table", { class: "list" }, heads(["history.name", "train.base_model", "train.dataset", "history.id", "history.created", "history.final_loss", "common.actions"]), adaptersBody)),
      mergeView.root,
    ),
    evalPanel.root,
  );

  async function openLog(job) {
    const data = await get(`/api/jobs/${encodeURIComponent(job.id)}/log?tail=500`);
    showModal("history.log", h("div", {}, h("code", { class: "muted", text: data.log_file || job.log_file || "" }), h("pre", { class: "log tall", testid: "history-log", text: (data.lines || []).join("\n") })));
  }

  async function loadJobs() {
    const q = new URLSearchParams({ limit: "200" });
    if (kindSel.value) q.set("kind", kindSel.value);
    if (statusSel.value) q.set("status", statusSel.value);
    if (modalitySel.value) q.set("modality", modalitySel.value);
    const { jobs } = await get(`/api/jobs?${q}`);
    scheduleLive(jobs || []);
    tbody.replaceChildren();
    if (!jobs || !jobs.length) {
      tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted", i18n: "history.empty" })));
      return;
    }
    for (const job of jobs) {
      const logBtn = h("button", { type: "button", class: "small", i18n: "history.open_log", onclick: () => withBusy(logBtn, () => openLog(job)) });
      const rerunBtn = h("button", { type: "button", class: "small", i18n: "history.rerun", testid: `history-rerun-${job.id}` });
      rerunBtn.addEventListener("click", () =>
        withBusy(rerunBtn, async () => {
          const { job_id: jobId, output_name: name, previous_output_name: previous } = await post(`/api/jobs/${encodeURIComponent(job.id)}/rerun`);
          if (name && previous && name !== previous) notifyKey("info", "history.rerun_renamed", { id: jobId, name, previous });
          else notifyKey("success", "history.rerun_started", { id: jobId });
          if (job.kind === "train") app.followTraining(jobId);
          else await loadJobs();
        }),
      );
      const watchBtn = job.kind === "train" ? h("button", { type: "button", class: "small", i18n: "common.view", testid: `job-follow-${job.id}`, onclick: () => app.followTraining(job.id) }) : null;
      const delBtn = h("button", { type: "button", class: "small danger", i18n: "common.delete", testid: `history-delete-${job.id}` });
      delBtn.addEventListener("click", () =>
        withBusy(delBtn, async () => {
          const ok = await confirmDialog(`ジョブ ${job.id} の記録(実行フォルダとログ)を削除しますか?`, `Delete the record of job ${job.id} (its run folder and log)?`);
          if (!ok) return;
          await del(`/api/jobs/${encodeURIComponent(job.id)}`);
          await loadJobs();
        }),
      );
      // an interrupted or cancelled training continues from its last checkpoint
      const resumeBtn = job.kind === "train" && (job.status === "canceled" || job.status === "interrupted")
        ? h("button", { type: "button", class: "small", i18n: "history.resume", testid: `history-resume-${job.id}` })
        : null;
      if (resumeBtn) {
        resumeBtn.addEventListener("click", () =>
          withBusy(resumeBtn, async () => {
            const { job_id: jobId } = await post(`/api/jobs/${encodeURIComponent(job.id)}/resume`);
            notifyKey("success", "history.resume_started", { id: jobId });
            app.followTraining(jobId);
          }),
        );
      }
      const status = setI18n(h("span", { class: `badge badge-${job.status}` }), statusKey(job.status));
      const { out, dataset } = jobSubject(job);
      const modality = app.modalities.find((mm) => mm.id === job.modality);
      const modalityCell = h("td", { testid: `history-modality-${job.id}` });
      setBilingual(modalityCell, modality ? modality.label_ja || job.modality : job.modality || "-", modality ? modality.label_en || job.modality : job.modality || "-");
      tbody.append(
        h(
          "tr",
          { testid: `history-row-${job.id}`, "data-status": job.status },
          h(
            "td",
            { class: "job-subject" },
            out ? h("strong", { testid: `history-name-${job.id}`, text: out }) : null,
            dataset ? h("div", { class: "muted small-text", testid: `history-dataset-${job.id}` }, h("span", { i18n: "history.from_dataset" }), ` ${dataset}`) : null,
            h("div", {}, h("code", { class: "muted small-text", text: job.id })),
          ),
          h("td", { i18n: kindKey(job), testid: `history-kind-${job.id}` }),
          modalityCell,
          h("td", {}, status),
          h("td", { text: formatDate(job.created_at) }),
          h("td", { class: "num", text: formatDuration(job.duration) }),
          h("td", { class: "num", text: formatNumber(finalLoss(job)) }),
          h("td", { class: "actions" }, watchBtn, logBtn, resumeBtn, rerunBtn, delBtn),
        ),
      );
    }
  }

  async function showAdapter(a) {
    const data = await get(`/api/adapters/${encodeURIComponent(app.modality)}/${encodeURIComponent(a.name)}`);
    const { evals, metrics, lineage, weights_file: weights, samples, ...rest } = data;
    const evalList = Array.isArray(evals) ? evals : evals ? [evals] : [];
    const latest = evalList.slice().sort((x, y) => String(y.created_at).localeCompare(String(x.created_at)))[0];
    showModal(
      "history.adapter_detail",
      h(
        "div",
        { testid: "adapter-detail" },
        kvTable(rest, "adapter-info"),
        weights ? h("p", {}, h("a", { class: "button", href: weights.url, download: weights.name, testid: "adapter-weights-download", text: `⬇ ${weights.name}` })) : null,
        metrics ? h("div", {}, h("h4", { i18n: "history.metrics" }), kvTable(metrics, "adapter-metrics")) : null,
        samples && samples.length ? h("div", { class: "img-gallery small", testid: "adapter-samples" },
          ...samples.map((s) => h("a", { href: s.url, target: "_blank", rel: "noopener" }, h("img", { src: s.url, alt: s.name, title: s.name, class: "img-thumb", loading: "lazy", testid: "adapter-sample" })))) : null,
        h("h4", { i18n: "refine.lineage" }),
        renderLineage(lineage),
        h("h4", { i18n: "history.evals" }),
        latest && latest.summary ? renderSummary(latest.summary, { testid: "adapter-latest-eval" }) : null,
        latest && latest.summary ? renderPreferenceCheck(latest.summary, { testid: "adapter-pref-check" }) : null,
        renderStoredEvals(evalList),
        // everything the API said, for the curious and for bug reports
        jsonToggle(data, "adapter-json"),
      ),
    );
  }

  async function mergeAdapter(a) {
    const name = await promptDialog("history.merge_name", `${a.name}-merged`, "history.merge", "merge");
    if (!name) return;
    const { job_id: jobId } = await post("/api/models/merge", { modality: app.modality, adapter: a.name, output_name: name });
    notifyKey("info", "history.merge_started", { name });
    mergeView.follow(jobId);
  }

  /** Export targets the modality declares (GGUF, Ollama, vLLM, A1111, LoRA merge / resize, the Hub ...): the
   * target's parameters as a form from its params_schema, then a followed job. */
  function exportAdapter(a, preferred) {
    const targets = Object.entries(app.info().export_targets || {});
    const targetSel = select(targets.map(([id, d]) => ({ value: id, bi: { ja: d.label_ja || id, en: d.label_en || id } })), { testid: "export-target" });
    if (preferred) targetSel.value = preferred;
    const nameInput = h("input", { type: "text", value: `${a.name}-${targetSel.value || "export"}`, testid: "export-name" });
    const paramsBox = h("div", { testid: "export-params" });
    let params = null;
    const showParams = () => {
      const target = (app.info().export_targets || {})[targetSel.value] || {};
      params = schemaForm(target.params_schema || {}, { idPrefix: `export-${targetSel.value}` });
      paramsBox.replaceChildren(params.root);
    };
    showParams();
    targetSel.addEventListener("change", () => { nameInput.value = `${a.name}-${targetSel.value}`; showParams(); });
    const start = h("button", { type: "button", class: "primary", i18n: "history.export_start", testid: "export-start" });
    const dlg = showModal("history.export", h("div", { testid: "export-form" }, field("history.export_target", targetSel), paramsBox, field("history.export_name", nameInput), h("div", { class: "row end" }, start)));
    start.addEventListener("click", () =>
      withBusy(start, async () => {
        const queued = await post("/api/exports", { modality: app.modality, adapter: a.name, target: targetSel.value, output_name: nameInput.value.trim() || null, params: params ? params.values() : {} });
        for (const w of queued.warnings || []) notify("warning", w.message_ja || w.message, w.message);
        notifyKey("info", "history.export_started", { name: queued.output_name });
        dlg.close();
        mergeView.follow(queued.job_id);
      }),
    );
  }

  async function loadAdapters() {
    const adapters = await listAdapters(app.modality);
    adaptersBody.replaceChildren();
    if (!adapters.length) {
      adaptersBody.append(h("tr", {}, h("td", { colspan: 7, class: "muted", i18n: "history.no_adapters" })));
      return;
    }
    for (const a of adapters) {
      const showBtn = h("button", { type: "button", class: "small", i18n: "common.view", testid: `adapter-view-${a.name}` });
      showBtn.addEventListener("click", () => withBusy(showBtn, () => showAdapter(a)));
      const evalBtn = h("button", { type: "button", class: "small", i18n: "history.eval", testid: `adapter-eval-${a.name}` });
      evalBtn.addEventListener("click", () => withBusy(evalBtn, () => evalPanel.open(a)));
      // only where the modality can merge (a diffusers LoRA or a voice adapter is used as it is)
      const mergeBtn = app.supports("merge") ? h("button", { type: "button", class: "small", i18n: "history.merge", testid: `adapter-merge-${a.name}` }) : null;
      if (mergeBtn) mergeBtn.addEventListener("click", () => withBusy(mergeBtn, () => mergeAdapter(a)));
      const download = h("a", { class: "button small", href: a.download_url, download: "", i18n: "common.download", testid: `adapter-download-${a.name}` });
      const hasTargets = Object.keys(app.info().export_targets || {}).length > 0;
      const exportBtn = hasTargets ? h("button", { type: "button", class: "small", i18n: "history.export", testid: `adapter-export-${a.name}` }) : null;
      if (exportBtn) exportBtn.addEventListener("click", () => exportAdapter(a));
      const hubBtn = (app.info().export_targets || {}).hub ? h("button", { type: "button", class: "small", i18n: "history.hub_push", testid: `adapter-hub-${a.name}` }) : null;
      if (hubBtn) hubBtn.addEventListener("click", () => exportAdapter(a, "hub"));
      const exportLinks = (a.exports || []).map((e) => h("a", { class: "badge", href: e.download_url, download: "", text: `${e.target}: ${e.name}`, testid: `export-download-${e.name}` }));
      const delBtn = h("button", { type: "button", class: "small danger", i18n: "common.delete", testid: `adapter-delete-${a.name}` });
      delBtn.addEventListener("click", () =>
        withBusy(delBtn, async () => {
          const ok = await confirmDialog(`アダプタ「${a.name}」を削除しますか? この操作は元に戻せません。`, `Delete the adapter "${a.name}"? This cannot be undone.`);
          if (!ok) return;
          await del(`/api/adapters/${encodeURIComponent(app.modality)}/${encodeURIComponent(a.name)}`);
          await loadAdapters();
        }),
      );
      const latest = (Array.isArray(a.evals) ? a.evals : []).filter((e) => e.summary && e.summary.adapter).sort((x, y) => String(y.created_at).localeCompare(String(x.created_at)))[0];
      // an adapter saved by a cancelled / stopped run is usable but not finished: say so
      const partialBadge = a.partial ? h("span", { class: "badge badge-canceled", i18n: "history.partial", testid: `adapter-partial-${a.name}`, i18nTitle: "history.partial_hint" }) : null;
      const evalBadge = latest ? setI18n(h("span", { class: "badge", testid: `adapter-eval-badge-${a.name}` }), "history.eval_badge", { passed: latest.summary.adapter.passed, total: latest.summary.adapter.total }) : null;
      adaptersBody.append(
        h(
          "tr",
          { testid: `adapter-row-${a.name}` },
          h("td", {}, a.name, partialBadge ? " " : null, partialBadge, evalBadge ? " " : null, evalBadge, ...exportLinks.flatMap((link) => [" ", link])),
          h("td", { text: a.base_model || "-" }),
          h("td", { text: a.dataset || "-" }),
          h("td", {}, h("code", { text: a.job_id || "-" })),
          h("td", { class: "nowrap", text: formatDate(a.created_at) }),
          h("td", { class: "num", text: formatNumber(a.metrics && (a.metrics.final_loss ?? a.metrics.train_loss)) }),
          h("td", { class: "actions" }, showBtn, download, evalBtn, mergeBtn, exportBtn, hubBtn, delBtn),
        ),
      );
    }
  }

  // 履歴 follows the jobs live: while one of them runs, the list reloads itself; when one ends,
  // the adapters too (a training that just finished adds its adapter)
  let liveTimer = null;
  let running = new Set();
  function scheduleLive(jobs) {
    const now = new Set(jobs.filter((j) => !TERMINAL.has(j.status)).map((j) => j.id));
    const ended = [...running].some((id) => !now.has(id));
    running = now;
    if (ended) loadAdapters().catch(() => {});
    clearTimeout(liveTimer);
    liveTimer = null;
    if (!now.size) return;
    liveTimer = setTimeout(() => {
      liveTimer = null;
      if (panel.hidden || !panel.isConnected) {
        running = new Set();
        return;
      }
      loadJobs().catch(() => {});
    }, LIVE_MS);
  }

  const refresh = () => withBusy(reload, () => Promise.all([loadJobs(), loadAdapters()]));
  for (const el of [kindSel, statusSel, modalitySel]) el.addEventListener("change", () => withBusy(null, loadJobs));
  reload.addEventListener("click", refresh);
  return {
    onShow: refresh,
    destroy: () => clearTimeout(liveTimer),
  };
}
