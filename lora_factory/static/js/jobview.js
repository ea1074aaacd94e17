// One live view of a job: status, progress bar with step/max_steps, ETA, tokens/s, loss chart,
// log tail, cancel. Used by the 学習 tab, the wizard, model downloads and data refinement; the
// testid prefix keeps the hooks unique ("" for the 学習 tab: job-progress, job-status, ...).
import { TERMINAL, get, post, watchJob } from "./api.js";
import { createLossChart } from "./chart.js";
import { confirmDialog, formatBytes, formatDuration, formatNumber, h, notifyKey, setI18n, showError, withBusy } from "./dom.js";
import { createMediaGallery } from "./widgets/gallery.js";

// a training method's own figures (DPO / KTO / ORPO / SimPO rewards and margins, GRPO rewards), shown when sent
const METHOD_KEYS = ["reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy", "kl", "reward", "reward_std", "completion_length"];
const TOKENS_KEYS = ["tokens_per_s", "tokens_per_second", "tokens_per_sec", "train_tokens_per_second", "tokens/s", "tok_s"];

export function statusKey(status) {
  return `status.${status || "queued"}`;
}

/**
 * @param {object} opts
 *   prefix: testid prefix ("" or "wizard-" ...); bytes: progress counts bytes (downloads);
 *   training: show loss and tokens/s (default: unless bytes); chart: show the loss chart; cancellable: show a cancel button; cancelTestid: its testid;
 *   onEnd(job): called once at the terminal status; errorAction(error): a node (a button) shown
 *   next to a failed job's error, or null.
 */
export function createJobView(opts = {}) {
  const prefix = opts.prefix || "";
  const tid = (name) => `${prefix}${name}`;
  // Loss and tokens/s belong to training; a download or a refine shows only progress and ETA.
  const training = opts.training ?? !opts.bytes;
  const status = h("span", { class: "badge", testid: tid("job-status"), i18n: "status.none" });
  const jobIdEl = h("code", { class: "muted", testid: tid("job-id") });
  const bar = h("progress", { max: 1, value: 0, class: "progress", testid: tid("job-bar") });
  const progressText = h("span", { class: "mono", testid: tid("job-progress"), text: "0/0" });
  const percent = h("span", { class: "muted mono", text: "" });
  const eta = h("span", { class: "mono", testid: tid("job-eta"), text: "-" });
  const loss = h("span", { class: "mono", testid: tid("job-loss"), text: "-" });
  const speed = h("span", { class: "mono", testid: tid("job-speed"), text: "-" });
  const methodFigures = h("span", { class: "mono", testid: tid("job-method-metrics"), text: "" });
  const methodBox = h("div", { hidden: true }, h("dt", { i18n: "job.method_metrics" }), h("dd", {}, methodFigures));
  // the devices the scheduler gave the job (GPU indices or simulated cpu:N); hidden for a CPU job
  const devicesText = h("span", { class: "mono", testid: tid("job-devices"), text: "-" });
  const devicesBox = h("div", { hidden: true }, h("dt", { i18n: "job.devices" }), h("dd", {}, devicesText));
  const errorText = h("span", { testid: tid("job-error-text") });
  const errorActions = h("span", { class: "job-error-actions" });
  const errorBox = h("div", { class: "job-error", hidden: true, role: "alert", testid: tid("job-error") }, errorText, errorActions);
  const logPre = h("pre", { class: "log", testid: tid("job-log"), tabindex: "0" });
  const cancel = h("button", { type: "button", class: "danger", i18n: "job.cancel", testid: opts.cancelTestid || tid("job-cancel"), disabled: true });
  // a cancelled or interrupted training continues from its last checkpoint (POST /api/jobs/{id}/resume)
  const resume = h("button", { type: "button", class: "primary", i18n: "job.resume", testid: tid("job-resume"), hidden: true });
  const chartBox = h("div", { class: "chart" });
  // samples written during training (images, utterances), shown as they arrive
  const samples = createMediaGallery({ testid: tid("job-samples") });
  const samplesBox = h("details", { class: "samples", open: true, hidden: true }, h("summary", { i18n: "job.samples" }), samples.root);

  const stats = h(
    "dl",
    { class: "job-stats" },
    h("div", {}, h("dt", { i18n: "job.progress" }), h("dd", {}, progressText, " ", percent)),
    h("div", {}, h("dt", { i18n: "job.eta" }), h("dd", {}, eta)),
    training ? h("div", {}, h("dt", { i18n: "job.loss" }), h("dd", {}, loss)) : null,
    training ? h("div", {}, h("dt", { i18n: "job.speed" }), h("dd", {}, speed)) : null,
    training ? methodBox : null,
    devicesBox,
  );

  const root = h(
    "section",
    { class: "jobview", hidden: true, testid: tid("job-view"), "aria-live": "polite" },
    h("div", { class: "row between" }, h("div", { class: "row" }, h("strong", { i18n: "job.title" }), jobIdEl, status), h("div", { class: "row" }, resume, cancel)),
    bar,
    stats,
    errorBox,
    opts.chart === false ? null : chartBox,
    samplesBox,
    h("details", { class: "logbox", open: opts.logOpen !== false }, h("summary", { i18n: "job.log" }), logPre),
  );

  let chart = null;
  let stopWatch = null;
  let currentId = null;
  let followCalls = 0;
  let ended = false;
  const logLines = [];

  function setProgress(rec) {
    if (!rec) return;
    const step = Number(rec.step ?? 0);
    const max = Number(rec.max_steps ?? 0);
    // A download counts bytes; a tiny-model or import job under the same view counts plain steps.
    if (opts.bytes && max >= 1024) progressText.textContent = `${formatBytes(step)}/${max ? formatBytes(max) : "?"}`;
    else progressText.textContent = `${step}/${max}`;
    // The raw counts stay readable by tests and tools even when shown as bytes.
    progressText.dataset.step = String(step);
    progressText.dataset.maxSteps = String(max);
    if (max > 0) {
      bar.max = max;
      bar.value = Math.min(step, max);
      percent.textContent = `(${Math.floor((100 * Math.min(step, max)) / max)}%)`;
    } else {
      bar.removeAttribute("value");
    }
    if (rec.eta !== undefined && rec.eta !== null) eta.textContent = formatDuration(rec.eta);
    if (rec.loss !== undefined && rec.loss !== null) {
      loss.textContent = formatNumber(rec.loss);
      if (chart) chart.push(step, Number(rec.loss));
    }
    // GRPO's per-function rewards arrive as reward_<name>: shown after the known keys
    const keys = [...METHOD_KEYS, ...Object.keys(rec).filter((k) => k.startsWith("reward_") && !METHOD_KEYS.includes(k))];
    const figures = keys.filter((k) => typeof rec[k] === "number").map((k) => `${k}=${formatNumber(rec[k], 3)}`);
    if (figures.length) {
      methodFigures.textContent = figures.join("  ");
      methodBox.hidden = false;
    }
    for (const key of TOKENS_KEYS) {
      if (rec[key] !== undefined && rec[key] !== null) {
        const tps = Number(rec[key]);
        speed.textContent = `${tps >= 100 ? Math.round(tps).toLocaleString() : formatNumber(tps, 3)} tok/s`;
        break;
      }
    }
  }

  function appendLog(line) {
    if (line === undefined || line === null) return;
    logLines.push(String(line));
    if (logLines.length > 300) logLines.splice(0, logLines.length - 300);
    const atBottom = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 8;
    logPre.textContent = logLines.join("\n");
    if (atBottom) logPre.scrollTop = logPre.scrollHeight;
  }

  function setStatus(job) {
    if (!job) return;
    setI18n(status, statusKey(job.status));
    status.dataset.status = job.status;
    status.className = `badge badge-${job.status}`;
    const devices = Array.isArray(job.devices) ? job.devices : [];
    devicesBox.hidden = devices.length === 0;
    devicesText.textContent = devices.join(", ") || "-";
    cancel.disabled = TERMINAL.has(job.status) || !opts.cancellable;
    cancel.hidden = !opts.cancellable || TERMINAL.has(job.status);
    if (job.error) {
      errorBox.hidden = false;
      errorBox.dataset.code = job.error.code || "";
      // The text sits in its own span: the language switch rewrites it without dropping the actions.
      errorText.dataset.textJa = `${job.error.message_ja || job.error.message || ""} [${job.error.code || ""}]`;
      errorText.dataset.textEn = `${job.error.message || job.error.message_ja || ""} [${job.error.code || ""}]`;
      errorText.textContent = document.documentElement.lang === "en" ? errorText.dataset.textEn : errorText.dataset.textJa;
      // What the user can do about this error (a download that needs a token: go to the setting).
      const action = opts.errorAction ? opts.errorAction(job.error, job) : null;
      errorActions.replaceChildren(...(action ? [" ", action] : []));
    }
    // a job that ended before any progress has nothing to count: no "0/0", no remaining time
    stats.hidden = TERMINAL.has(job.status) && job.status !== "completed" && !Number(job.max_steps) && !Number(job.step);
    bar.hidden = stats.hidden;
    if (job.status === "completed" && job.max_steps && !opts.bytes) setProgress({ step: job.step ?? job.max_steps, max_steps: job.max_steps });
  }

  cancel.addEventListener("click", () =>
    withBusy(cancel, async () => {
      if (!currentId) return;
      const ok = await confirmDialog(
        `ジョブ ${currentId} をキャンセルしますか? 学習はそこで止まり、最後のチェックポイントから「再開」できます。`,
        `Cancel job ${currentId}? It stops there; you can resume it from its last checkpoint.`,
        "job.cancel_confirm",
      );
      if (!ok) return;
      if (opts.cancelPath) await post(opts.cancelPath(currentId));
      else await post(`/api/jobs/${encodeURIComponent(currentId)}/cancel`);
      cancel.disabled = true;
    }),
  );

  /** Start following a job id (stops following the previous one). */
  async function follow(jobId) {
    if (stopWatch) stopWatch();
    stopWatch = null;
    // Only the latest call may write into the view: two follows of the same job (a click on 表示 that mounts the
    // 学習 tab, whose restore follows the running training too) showed its log and samples twice, and the
    // first one's event stream, never stopped, added them again after a later follow had cleared the view.
    const call = ++followCalls;
    const latest = () => call === followCalls;
    currentId = jobId;
    ended = false;
    logLines.length = 0;
    logPre.textContent = "";
    errorBox.hidden = true;
    errorActions.replaceChildren();
    root.hidden = false;
    jobIdEl.textContent = jobId;
    progressText.textContent = "0/0";
    percent.textContent = "";
    eta.textContent = "-";
    loss.textContent = "-";
    speed.textContent = "-";
    methodFigures.textContent = "";
    methodBox.hidden = true;
    bar.value = 0;
    samples.clear();
    samplesBox.hidden = true;
    cancel.hidden = !opts.cancellable;
    cancel.disabled = !opts.cancellable;
    resume.hidden = true;
    stats.hidden = false;
    bar.hidden = false;
    setI18n(status, "status.queued");
    status.dataset.status = "queued"; // not the previous job's status while the new one starts
    status.className = "badge badge-queued";
    if (opts.chart !== false) {
      chartBox.replaceChildren();
      chart = createLossChart(chartBox);
    }
    // Catch up with what already happened (a job opened from the history, or a reconnect).
    try {
      const [job, metrics, log] = await Promise.all([
        get(`/api/jobs/${encodeURIComponent(jobId)}`),
        opts.chart === false ? Promise.resolve({ metrics: [] }) : get(`/api/jobs/${encodeURIComponent(jobId)}/metrics`).catch(() => ({ metrics: [] })),
        get(`/api/jobs/${encodeURIComponent(jobId)}/log?tail=100`).catch(() => ({ lines: [] })),
      ]);
      if (!latest()) return;
      for (const rec of metrics.metrics || []) setProgress(rec);
      for (const line of log.lines || []) appendLog(line);
      setStatus(job);
      if (job.max_steps) setProgress({ ...(job.metrics || {}), step: job.step, max_steps: job.max_steps, eta: job.eta });
      if (TERMINAL.has(job.status)) {
        // an ended job gets no event stream: its samples come from their list (a job opened from the history)
        const written = await get(`/api/jobs/${encodeURIComponent(jobId)}/samples`).catch(() => ({ samples: [] }));
        if (!latest()) return;
        for (const rec of written.samples || []) addSample(rec);
        end(job);
        return;
      }
    } catch (err) {
      if (!latest()) return;
      showError(err);
    }
    const seenLog = logLines.length;
    let skipped = 0;
    stopWatch = watchJob(jobId, {
      onProgress: (rec) => latest() && setProgress(rec),
      onSample: (rec) => latest() && addSample(rec),
      onLog: (line) => {
        if (!latest()) return;
        // The event stream replays the log from its start: skip the lines already shown.
        if (skipped < seenLog && logLines[skipped] === line) {
          skipped += 1;
          return;
        }
        skipped = seenLog;
        appendLog(line);
      },
      onStatus: (job) => latest() && setStatus(job),
      onEnd: (job) => latest() && end(job),
    });
  }

  resume.addEventListener("click", () =>
    withBusy(resume, async () => {
      const { job_id: jobId } = await post(`/api/jobs/${encodeURIComponent(currentId)}/resume`);
      notifyKey("success", "history.resume_started", { id: jobId });
      follow(jobId);
    }),
  );

  function addSample(rec) {
    if (!rec || !rec.url) return;
    samplesBox.hidden = false;
    samples.add({ kind: rec.kind, url: rec.url, caption: rec.caption, label: `step ${rec.step}` });
  }

  function end(job) {
    if (ended) return;
    ended = true;
    setStatus(job);
    cancel.disabled = true;
    cancel.hidden = true;
    // nothing is left to wait for: no remaining time after the end
    eta.textContent = "-";
    resume.hidden = !(opts.cancellable && job.kind === "train" && (job.status === "canceled" || job.status === "interrupted"));
    if (opts.onEnd) opts.onEnd(job);
  }

  return {
    root,
    follow,
    get jobId() {
      return currentId;
    },
    stop: () => stopWatch && stopWatch(),
  };
}

export function describeJobResult(job) {
  return job && job.result ? job.result : {};
}

export { withBusy };
