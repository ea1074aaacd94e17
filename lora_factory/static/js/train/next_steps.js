// Where a training leads: once the job ends, a result message names the adapter it made and offers
// the next steps (推論で比較 / 回帰テスト / 履歴); a failed or cancelled run says so and points to 履歴.
import { h, setBilingual, setI18n } from "../dom.js";

/** Wait for an element (another tab renders its lists after a fetch); null after `ms`. */
function waitFor(selector, ms = 8000) {
  return new Promise((resolve) => {
    const found = document.querySelector(selector);
    if (found) return resolve(found);
    const obs = new MutationObserver(() => {
      const el = document.querySelector(selector);
      if (el) {
        obs.disconnect();
        resolve(el);
      }
    });
    obs.observe(document.body, { childList: true, subtree: true });
    setTimeout(() => {
      obs.disconnect();
      resolve(null);
    }, ms);
  });
}

/** opts.testid: the box's testid; its buttons are `<testid>-infer`, `-eval`, `-history`. */
export function createNextSteps(app, opts = {}) {
  const id = opts.testid || "train-result";
  const message = h("p", { testid: `${id}-message` });
  const note = h("p", { class: "hint", testid: `${id}-note`, hidden: true });
  const inferBtn = h("button", { type: "button", class: "primary", i18n: "next.infer", testid: `${id}-infer` });
  const evalBtn = h("button", { type: "button", i18n: "next.eval", testid: `${id}-eval` });
  const historyBtn = h("button", { type: "button", i18n: "next.history", testid: `${id}-history` });
  const root = h("section", { class: "callout next-steps", hidden: true, testid: id, role: "status" }, message, note, h("div", { class: "row wrap" }, inferBtn, evalBtn, historyBtn));
  let target = null;

  inferBtn.addEventListener("click", () => {
    // the chat view picks this up when it shows: base and adapter chosen, side by side comparison on
    app.pendingInfer = { base_model: target.base_model, adapter: target.adapter, compare: true };
    app.goTab("infer");
  });
  evalBtn.addEventListener("click", async () => {
    app.goTab("history");
    const btn = await waitFor(`#panel-history [data-testid="adapter-eval-${CSS.escape(target.adapter)}"]`);
    if (btn) btn.click();
  });
  historyBtn.addEventListener("click", () => app.goTab("history"));

  return {
    root,
    /** job: the ended job; where: {base_model, adapter, demo} */
    show(job, where) {
      target = where;
      root.hidden = false;
      root.dataset.status = job.status;
      root.dataset.adapter = where.adapter || "";
      const ok = job.status === "completed";
      root.classList.toggle("is-failed", !ok);
      if (ok) setI18n(message, "next.done", { name: where.adapter });
      else setI18n(message, `next.ended_${["failed", "canceled", "interrupted"].includes(job.status) ? job.status : "failed"}`, { name: where.adapter });
      inferBtn.hidden = !ok;
      evalBtn.hidden = !ok || !app.supports("regression");
      note.hidden = !where.demo;
      if (where.demo) setI18n(note, "next.demo_note");
    },
    hide() {
      root.hidden = true;
    },
    setNote(ja, en) {
      note.hidden = false;
      setBilingual(note, ja, en);
    },
  };
}
