// The estimate before starting: total steps (and whether epochs or max_steps decides), the time from
// this machine's measured speed, the memory against the VRAM (GPU) or free RAM (CPU), with warnings.
// Computed by the server (POST /api/train/estimate, the same as `lora-factory train --dry-run`).
import { post } from "../api.js";
import { formatBytes, formatDuration, formatNumber, h, setBilingual, setI18n } from "../dom.js";

export function createEstimateBox(opts) {
  const steps = h("dd", { testid: "estimate-steps", text: "-" });
  const time = h("dd", { testid: "estimate-time", text: "-" });
  const memory = h("dd", { testid: "estimate-memory", text: "-" });
  const warnings = h("ul", { class: "estimate-warnings", testid: "estimate-warnings" });
  const problem = h("p", { class: "field-error", testid: "estimate-error", hidden: true });
  const again = h("button", { type: "button", class: "small", i18n: "train.estimate_refresh", testid: "train-estimate" });
  const root = h(
    "section",
    { class: "full estimate card-inner", testid: "train-estimate-box", "aria-live": "polite" },
    h("div", { class: "row between" }, h("strong", { i18n: "train.estimate_title" }), again),
    h("dl", { class: "job-stats" }, h("div", {}, h("dt", { i18n: "train.estimate_steps" }), steps), h("div", {}, h("dt", { i18n: "train.estimate_time" }), time), h("div", {}, h("dt", { i18n: "train.estimate_memory" }), memory)),
    warnings,
    problem,
  );

  function render(est) {
    const s = est.steps || {};
    root.dataset.totalSteps = String(s.total_steps ?? "");
    if (s.total_steps == null) setI18n(steps, "train.estimate_steps_unknown");
    else if (s.decided_by === "max_steps") setI18n(steps, "train.estimate_steps_max", { total: s.total_steps, samples: s.samples ?? "?", per_epoch: s.steps_per_epoch ?? "?", covered: s.epochs_covered ?? "?" });
    else setI18n(steps, "train.estimate_steps_epochs", { total: s.total_steps, samples: s.samples ?? "?", epochs: s.epochs, batch: s.batch_size, accum: s.grad_accum });
    const tm = est.time || {};
    if (tm.seconds == null) setI18n(time, tm.source === "past_jobs" ? "train.estimate_time_steps_unknown" : "train.estimate_time_none");
    else setI18n(time, "train.estimate_time_past", { duration: formatDuration(tm.seconds), n: (tm.jobs || []).length, speed: formatNumber(tm.steps_per_s, 3) });
    const mem = est.memory || {};
    root.dataset.fits = String(mem.fits);
    if (mem.error) setBilingual(memory, `見積もれません: ${mem.error}`, `Cannot estimate: ${mem.error}`);
    else {
      const where = mem.device === "gpu" ? "VRAM" : "RAM";
      const key = mem.available_bytes ? "train.estimate_memory_of" : "train.estimate_memory_only";
      setI18n(memory, key, { total: formatBytes(mem.total_bytes), available: formatBytes(mem.available_bytes), where, device: mem.device === "gpu" ? "GPU" : "CPU", precision: mem.precision, params: formatNumber(mem.parameters) });
      memory.classList.toggle("is-bad", mem.fits === false);
    }
    warnings.replaceChildren(...(est.warnings || []).map((w) => setBilingual(h("li", { class: `warning warning-${w.code}`, "data-code": w.code }), w.message_ja, w.message)));
  }

  let timer = null;
  let seq = 0;
  async function run() {
    const body = (() => {
      try {
        return opts.body();
      } catch (err) {
        problem.hidden = false;
        setBilingual(problem, err.message_ja || err.message, err.message);
        return null;
      }
    })();
    if (!body) {
      root.dataset.state = "idle";
      return;
    }
    const mine = ++seq;
    root.dataset.state = "loading";
    try {
      const est = await post("/api/train/estimate", body);
      if (mine !== seq) return;
      problem.hidden = true;
      render(est);
      root.dataset.state = "done";
    } catch (err) {
      if (mine !== seq) return;
      problem.hidden = false;
      setBilingual(problem, err.message_ja || err.message, err.message);
      root.dataset.state = "error";
    }
  }
  again.addEventListener("click", run);
  return {
    root,
    run,
    /** Re-estimate shortly after the last change (typing in the JSON box sends one request, not ten). */
    schedule() {
      clearTimeout(timer);
      timer = setTimeout(run, 300);
    },
  };
}
