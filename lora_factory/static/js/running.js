// Jobs that cannot get lost: the header shows how many jobs run (queued or running) and lists them,
// each a link to where it is followed; after a reload the 学習 tab follows the training that still
// runs instead of coming back as an empty form.
import { get } from "./api.js";
import { h, setI18n } from "./dom.js";
import { t } from "./i18n.js";

const ACTIVE = new Set(["queued", "running"]);
const POLL_MS = 3000;

/** The jobs not yet ended, newest first. */
export async function activeJobs() {
  const { jobs } = await get("/api/jobs?limit=100");
  return (jobs || []).filter((j) => ACTIVE.has(j.status));
}

/** A job's name for people: its output (adapter, dataset version, model) or its id. */
export function jobName(job) {
  return job.output_name || (job.spec && job.spec.output_name) || job.id;
}

/** After a reload, the 学習 tab follows the newest training of this modality that still runs. */
export async function restoreTraining(app) {
  let jobs = [];
  try {
    jobs = await activeJobs();
  } catch {
    return; // the header indicator reports an unreachable server
  }
  const job = jobs.find((j) => j.kind === "train" && j.modality === app.modality);
  const mounted = app.mounted.train;
  if (job && mounted && mounted.follow) mounted.follow(job.id);
}

/** The header indicator: 「実行中のジョブ 2」, opening a list of the jobs, each linking to its view. */
export function startJobsIndicator(app) {
  const count = h("span", { class: "jobs-count", testid: "jobs-indicator-count" });
  const summary = h("summary", { class: "jobs-summary" }, h("span", { class: "spinner", "aria-hidden": "true" }), h("span", { i18n: "jobs.running" }), " ", count);
  const list = h("ul", { class: "jobs-list", testid: "jobs-indicator-list" });
  const box = h("details", { class: "jobs-indicator", testid: "jobs-indicator", hidden: true }, summary, list);
  const actions = document.querySelector(".top-actions");
  if (actions) actions.prepend(box);

  const open = (job) => {
    box.open = false;
    if (job.kind === "train" && job.modality === app.modality) app.followTraining(job.id);
    else app.goTab("history");
  };

  let shown = "";
  async function tick() {
    let jobs = null;
    try {
      jobs = await activeJobs();
    } catch {
      jobs = null;
    }
    if (jobs) {
      box.hidden = jobs.length === 0;
      count.textContent = String(jobs.length);
      box.dataset.count = String(jobs.length);
      const key = jobs.map((j) => `${j.id}:${j.status}`).join(",");
      if (key !== shown) {
        shown = key;
        list.replaceChildren(
          ...jobs.map((job) => {
            const kind = setI18n(h("span", { class: "muted" }), `kind.${job.kind}`);
            const status = setI18n(h("span", { class: `badge badge-${job.status}` }), `status.${job.status}`);
            const link = h("a", { href: job.kind === "train" ? "#train" : "#history", testid: `jobs-indicator-${job.id}`, title: t("jobs.open") }, jobName(job));
            link.addEventListener("click", (ev) => {
              ev.preventDefault();
              open(job);
            });
            return h("li", {}, kind, " ", link, " ", status);
          }),
        );
      }
    }
    setTimeout(tick, POLL_MS);
  }
  tick();
}
