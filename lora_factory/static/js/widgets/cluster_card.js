// The Ray cluster card of the System tab: where training jobs go (GET /api/system's "cluster": the
// nodes, their resources and what is free, or why the cluster does not answer) and the cluster
// settings (PUT /api/settings: address, workers per job, resources per worker, the workspace's path
// on the nodes). `lora-factory serve --cluster ADDRESS` overrides the address for one server run.
import { get, put } from "../api.js";
import { field, formatBytes, h, notifyKey, setBilingual, setI18n, withBusy } from "../dom.js";

function resourcesText(res) {
  return Object.entries(res || {})
    .map(([k, v]) => `${k}: ${/memory/i.test(k) ? formatBytes(v) : Number.isInteger(v) ? v : v.toFixed(2)}`)
    .join(" · ") || "-";
}

export function clusterCard(onSaved) {
  const address = h("input", { type: "text", testid: "cluster-address", autocomplete: "off", spellcheck: "false", i18nPlaceholder: "cluster.address_placeholder" });
  const workers = h("input", { type: "number", min: "1", step: "1", testid: "cluster-workers", i18nPlaceholder: "cluster.workers_placeholder" });
  const resources = h("input", { type: "text", testid: "cluster-resources", autocomplete: "off", spellcheck: "false", i18nPlaceholder: "cluster.resources_placeholder" });
  const workspace = h("input", { type: "text", testid: "cluster-workspace", autocomplete: "off", spellcheck: "false", i18nPlaceholder: "cluster.workspace_placeholder" });
  const save = h("button", { type: "submit", class: "primary", i18n: "settings.save", testid: "cluster-save" });
  const state = h("p", { class: "full", testid: "cluster-state" });
  const nodesBody = h("tbody", { testid: "cluster-nodes" });
  const nodes = h(
    "div",
    { class: "table-wrap full", hidden: true },
    h("table", { class: "list" }, h("thead", {}, h("tr", {}, ["cluster.node", "system.state", "cluster.resources", "cluster.free"].map((k) => h("th", { scope: "col", i18n: k })))), nodesBody),
  );
  const form = h(
    "form",
    { class: "card form-grid", novalidate: true, testid: "cluster-card" },
    h("h3", { class: "full", i18n: "cluster.title" }),
    h("p", { class: "full muted lead-in", i18n: "cluster.lead" }),
    state,
    nodes,
    field("cluster.address", address, "cluster.address_hint"),
    field("cluster.workers", workers, "cluster.workers_hint"),
    field("cluster.resources_per_worker", resources, "cluster.resources_hint"),
    field("cluster.workspace", workspace, "cluster.workspace_hint"),
    h("div", { class: "row full" }, save),
  );

  function renderSettings(s) {
    address.value = s.cluster_address || "";
    workers.value = s.cluster_workers || "";
    resources.value = s.cluster_resources_per_worker ? JSON.stringify(s.cluster_resources_per_worker) : "";
    workspace.value = s.cluster_workspace || "";
  }

  function render(cluster) {
    cluster = cluster || { configured: false };
    state.dataset.state = !cluster.configured ? "local" : cluster.ok ? "ok" : cluster.ok === false ? "unreachable" : "pending";
    nodes.hidden = !cluster.ok;
    nodesBody.replaceChildren();
    if (!cluster.configured) {
      state.className = "full muted";
      setI18n(state, "cluster.local");
      return;
    }
    if (cluster.ok === false) {
      state.className = "full health-item health-error";
      setBilingual(state, cluster.error_ja || `クラスター ${cluster.address} に接続できません: ${cluster.error}`, cluster.error || "");
      return;
    }
    if (!cluster.ok) {
      state.className = "full muted";
      setI18n(state, "cluster.pending", { address: cluster.address });
      return;
    }
    state.className = "full health-ok";
    setI18n(state, "cluster.connected", { address: cluster.address, version: cluster.ray_version || "?", nodes: (cluster.nodes || []).length });
    for (const n of cluster.nodes || []) {
      const alive = h("span", { class: n.alive ? "badge badge-completed" : "badge badge-failed", i18n: n.alive ? "cluster.alive" : "cluster.dead" });
      nodesBody.append(
        h("tr", { testid: `cluster-node-${n.address || n.id}` },
          h("td", { text: `${n.hostname || "-"} (${n.address || n.id})` }),
          h("td", {}, alive),
          h("td", { class: "small-text", text: resourcesText(n.resources) }),
          h("td", { class: "small-text", text: resourcesText(n.available) })),
      );
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(save, async () => {
      let perWorker = null;
      if (resources.value.trim()) {
        try {
          perWorker = JSON.parse(resources.value);
        } catch {
          notifyKey("error", "cluster.resources_invalid");
          return;
        }
      }
      renderSettings(await put("/api/settings", {
        cluster_address: address.value.trim(),
        cluster_workers: workers.value ? Number(workers.value) : null,
        cluster_resources_per_worker: perWorker,
        cluster_workspace: workspace.value.trim(),
      }));
      notifyKey("success", "cluster.saved");
      if (onSaved) await onSaved();
    });
  });
  async function loadSettings() {
    try {
      renderSettings(await get("/api/settings"));
    } catch {
      // a damaged settings.json: the Hugging Face card above says so, with its path
    }
  }
  return { root: form, render, loadSettings };
}
