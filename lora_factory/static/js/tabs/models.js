// モデル: download by repo id (a job whose progress counts bytes), import a local folder, create
// the offline demo model, list with size and architecture, delete with confirmation.
import { del, get, post } from "../api.js";
import { confirmDialog, field, formatBytes, formatNumber, h, notifyKey, showError, withBusy } from "../dom.js";
import { createJobView } from "../jobview.js";
import { listModels } from "../lists.js";

export function mount(panel, app) {
  // The token lives in the システム tab, below the system cards: land on its field, not the page top.
  const goToSettings = () => {
    app.goTab("system");
    const token = document.querySelector("#panel-system [data-testid=settings-hf-token]");
    if (token) {
      token.scrollIntoView({ block: "center" });
      token.focus({ preventScroll: true });
    }
  };
  // A download refused for lack of a token: the error itself offers the way to the token field.
  const AUTH_CODES = new Set(["HUB_AUTH_REQUIRED"]);
  const authAction = (err) =>
    err && AUTH_CODES.has(err.code) ? h("button", { type: "button", class: "link", i18n: "models.go_settings", testid: "model-error-go-settings", onclick: goToSettings }) : null;
  // The Hub out of reach (offline, a firewall): the card says what can be done from here — run the
  // download again (it resumes), make the offline demo model, or set a Hub mirror.
  const RETRY_CODES = new Set(["HUB_UNREACHABLE", "HUB_ERROR", "CANCELED"]);
  const goToMirror = () => {
    app.goTab("system");
    const endpoint = document.querySelector("#panel-system [data-testid=settings-hf-endpoint]");
    if (endpoint) {
      endpoint.scrollIntoView({ block: "center" });
      endpoint.focus({ preventScroll: true });
    }
  };
  const pointAtTiny = () => {
    tinyBtn.scrollIntoView({ block: "center" });
    tinyBtn.focus({ preventScroll: true });
  };
  const errorAction = (err, job) => {
    const auth = authAction(err);
    if (auth || !err || !RETRY_CODES.has(err.code) || !job) return auth;
    const retry = h("button", { type: "button", class: "primary small", i18n: "models.retry", testid: "model-error-retry" });
    retry.addEventListener("click", () =>
      withBusy(retry, async () => {
        const { job_id: jobId } = await post(`/api/jobs/${encodeURIComponent(job.id)}/rerun`);
        dlView.follow(jobId);
      }),
    );
    const offline = h("button", { type: "button", class: "small", i18n: "models.use_tiny", testid: "model-error-tiny", onclick: pointAtTiny });
    const mirror = h("button", { type: "button", class: "link", i18n: "models.go_mirror", testid: "model-error-go-mirror", onclick: goToMirror });
    return h("div", { class: "row wrap job-error-help", testid: "model-error-help" }, retry, offline, mirror);
  };
  const m = app.modality;
  const repo = h("input", { type: "text", testid: "model-repo-id", i18nPlaceholder: "models.repo_placeholder", autocomplete: "off", required: true });
  const revision = h("input", { type: "text", testid: "model-revision", placeholder: "main", autocomplete: "off" });
  const dlName = h("input", { type: "text", testid: "model-name", autocomplete: "off" });
  const dlBtn = h("button", { type: "submit", class: "primary", i18n: "models.download", testid: "model-download" });
  const dlView = createJobView({ prefix: "model-", bytes: true, chart: false, cancellable: true, logOpen: false, onEnd: () => refresh(), errorAction });

  const srcPath = h("input", { type: "text", testid: "model-import-path", i18nPlaceholder: "models.import_placeholder", autocomplete: "off", required: true });
  const importName = h("input", { type: "text", testid: "model-import-name", autocomplete: "off" });
  const importBtn = h("button", { type: "submit", i18n: "models.import", testid: "model-import" });
  const tinyBtn = h("button", { type: "button", i18n: "wizard.make_tiny", testid: "model-tiny" });

  const tbody = h("tbody", { testid: "model-list" });
  const table = h(
    "table",
    { class: "list" },
    h(
      "thead",
      {},
      h("tr", {}, ["models.name", "models.architecture", "models.parameters", "models.size", "models.path", "common.actions"].map((k) => h("th", { scope: "col", i18n: k }))),
    ),
    tbody,
  );

  const dlForm = h(
    "form",
    { class: "card form-grid", novalidate: true },
    h("h3", { class: "full", i18n: "models.download_title" }),
    field("models.repo_id", repo),
    field("models.revision", revision),
    field("models.local_name", dlName, "models.local_name_hint"),
    h(
      "p",
      { class: "full hint-box", testid: "model-token-hint" },
      h("span", { i18n: "models.gated_hint" }),
      " ",
      h("button", { type: "button", class: "link", i18n: "models.go_settings", testid: "model-go-settings", onclick: goToSettings }),
    ),
    h("div", { class: "row full" }, dlBtn),
    h("div", { class: "full" }, dlView.root),
  );
  const importForm = h(
    "form",
    { class: "card form-grid", novalidate: true },
    h("h3", { class: "full", i18n: "models.import_title" }),
    field("models.source_path", srcPath, "models.source_hint"),
    field("models.local_name", importName),
    h("div", { class: "row full" }, importBtn, tinyBtn),
  );

  panel.append(h("h2", { i18n: "tab.models" }), h("div", { class: "two-col" }, dlForm, importForm), h("div", { class: "card" }, h("h3", { i18n: "models.list" }), h("div", { class: "table-wrap" }, table)));

  dlForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(dlBtn, async () => {
      const body = { modality: m, repo_id: repo.value.trim() };
      if (revision.value.trim()) body.revision = revision.value.trim();
      if (dlName.value.trim()) body.name = dlName.value.trim();
      let jobId;
      try {
        ({ job_id: jobId } = await post("/api/models/download", body));
      } catch (err) {
        // Refused before a job exists: the notice carries the same way to the token field.
        const action = authAction(err);
        if (!action) throw err;
        showError(err).querySelector(".notice-text").after(" ", action);
        return;
      }
      dlView.follow(jobId);
    });
  });
  importForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(importBtn, async () => {
      const body = { modality: m, source_path: srcPath.value.trim() };
      if (importName.value.trim()) body.name = importName.value.trim();
      const { job_id: jobId } = await post("/api/models/import", body);
      dlView.follow(jobId);
    });
  });
  tinyBtn.addEventListener("click", () =>
    withBusy(tinyBtn, async () => {
      const { job_id: jobId } = await post("/api/models/tiny", { modality: m });
      dlView.follow(jobId);
    }),
  );

  // after a reload the last download of this modality is shown again (running, or failed with its help)
  let restored = false;
  async function restoreLastDownload() {
    restored = true;
    const { jobs } = await get(`/api/jobs?kind=download&modality=${encodeURIComponent(m)}&limit=5`);
    const last = (jobs || []).find((j) => !(j.spec && j.spec.source === "tiny"));
    if (last && last.status !== "completed" && !dlView.jobId) dlView.follow(last.id);
  }

  async function refresh() {
    if (!restored) restoreLastDownload().catch(() => {});
    const models = await listModels(m);
    tbody.replaceChildren();
    if (!models.length) {
      tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted", i18n: "models.empty" })));
      return;
    }
    for (const model of models) {
      const delBtn = h("button", { type: "button", class: "small danger", i18n: "common.delete", testid: `model-delete-${model.name}` });
      delBtn.addEventListener("click", () =>
        withBusy(delBtn, async () => {
          const ok = await confirmDialog(`モデル「${model.name}」を削除しますか? この操作は元に戻せません。`, `Delete the model "${model.name}"? This cannot be undone.`);
          if (!ok) return;
          await del(`/api/models/${encodeURIComponent(m)}/${encodeURIComponent(model.name)}`);
          notifyKey("success", "common.deleted", { name: model.name });
          await refresh();
        }),
      );
      tbody.append(
        h(
          "tr",
          { testid: `model-row-${model.name}` },
          h("td", { text: model.name }),
          h("td", { text: model.architecture || "-" }),
          h("td", { class: "num", text: model.parameters ? formatNumber(model.parameters) : "-" }),
          h("td", { class: "num", text: formatBytes(model.size_bytes) }),
          h("td", {}, h("code", { class: "path", text: model.rel_path || model.path || "" })),
          h("td", {}, delBtn),
        ),
      );
    }
  }

  return { onShow: refresh };
}
