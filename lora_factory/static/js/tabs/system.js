// システム: CPU / RAM / GPU / VRAM / disk / library versions (GET /api/system) and the plugins
// with their load errors (GET /api/plugins): the first place to look when something is off; and
// the Hugging Face settings (GET/PUT /api/settings) that gated or private model downloads need.
import { devicesCard } from "../widgets/devices_card.js";
import { get, put } from "../api.js";
import { field, formatBytes, h, kvTable, notifyKey, select, setBilingual, setI18n, withBusy } from "../dom.js";
import { clusterCard } from "../widgets/cluster_card.js";

function humanise(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj || {})) {
    out[k] = typeof v === "number" && /bytes|total|free|used|available|memory|vram/i.test(k) && v > 4096 ? formatBytes(v) : v;
  }
  return out;
}

/**
 * The Hugging Face form. The token is write-only: the API never returns it (only a hint such as
 * "…1234"), so the password field always starts empty and an empty field leaves the token as it is.
 */
function settingsCard() {
  const token = h("input", { type: "password", testid: "settings-hf-token", autocomplete: "new-password", spellcheck: "false", i18nPlaceholder: "settings.token_placeholder" });
  const endpoint = h("input", { type: "text", inputmode: "url", testid: "settings-hf-endpoint", autocomplete: "off", spellcheck: "false", i18nPlaceholder: "settings.endpoint_placeholder" });
  const state = h("span", { class: "badge", testid: "settings-token-state", i18n: "status.none" });
  const clearBtn = h("button", { type: "button", class: "small danger", i18n: "settings.token_clear", testid: "settings-token-clear", hidden: true });
  const save = h("button", { type: "submit", class: "primary", i18n: "settings.save", testid: "settings-save" });

  function render(s) {
    if (s.hf_token_set) {
      setI18n(state, "settings.token_set", { hint: s.hf_token_hint || "…" });
      state.className = "badge badge-completed";
    } else {
      setI18n(state, "settings.token_unset");
      state.className = "badge";
    }
    state.dataset.set = String(Boolean(s.hf_token_set));
    clearBtn.hidden = !s.hf_token_set;
    token.value = "";
    endpoint.value = s.hf_endpoint || "";
  }

  const tokenRow = field("settings.token", token, "settings.token_hint");
  tokenRow.insertBefore(h("div", { class: "row token-state" }, h("span", { class: "small-text", i18n: "settings.token_current" }), state, clearBtn), token);
  const form = h(
    "form",
    { class: "card form-grid", novalidate: true, testid: "settings-form" },
    h("h3", { class: "full", i18n: "settings.title" }),
    h("p", { class: "full muted lead-in", i18n: "settings.lead" }),
    tokenRow,
    field("settings.endpoint", endpoint, "settings.endpoint_hint"),
    h("div", { class: "row full" }, save),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(save, async () => {
      const body = { hf_endpoint: endpoint.value.trim() };
      if (token.value.trim()) body.hf_token = token.value.trim();
      render(await put("/api/settings", body));
      problem.hidden = true;
      notifyKey("success", "settings.saved");
    });
  });
  clearBtn.addEventListener("click", () =>
    withBusy(clearBtn, async () => {
      render(await put("/api/settings", { hf_token: "" }));
      notifyKey("success", "settings.token_cleared");
    }),
  );
  const problem = h("p", { class: "full health-item health-error", testid: "settings-error", hidden: true });
  form.insertBefore(problem, tokenRow);
  async function load() {
    try {
      render(await get("/api/settings"));
      problem.hidden = true;
    } catch (err) {
      // a damaged settings.json: said here, with its path; saving writes a new one (the old one is kept aside)
      setBilingual(problem, err.message_ja || err.message, err.message || err.message_ja);
      problem.dataset.code = err.code || "";
      problem.hidden = false;
    }
  }
  return { root: form, load };
}

/** The scheduler's state and the server's problems (GET /api/system's "health"). */
function healthView(health) {
  const out = [h("h3", { i18n: "health.title" })];
  if (!health) return out;
  const sched = health.scheduler || {};
  const state = h("span", { class: sched.running ? "health-ok" : "health-bad", testid: "health-scheduler", i18n: sched.running ? "health.scheduler_running" : "health.scheduler_stopped" });
  state.dataset.running = String(Boolean(sched.running));
  out.push(h("p", {}, h("span", { i18n: "health.scheduler" }), " ", state));
  const problems = health.problems || [];
  if (!problems.length) out.push(h("p", { class: "health-ok", i18n: "health.ok", testid: "health-ok" }));
  for (const p of problems) {
    const item = h("p", { class: `health-item health-${p.level === "warning" ? "warning" : "error"}`, testid: `system-health-${p.code}` });
    setBilingual(item, p.message_ja || p.message, p.message || p.message_ja);
    out.push(item);
  }
  for (const n of health.notices || []) {
    const item = h("p", { class: "health-item", testid: `system-notice-${n.code}` });
    setBilingual(item, n.message_ja || n.message, n.message || n.message_ja);
    out.push(item);
  }
  return out;
}

export function mount(panel) {
  const settings = settingsCard();
  const cluster = clusterCard(() => refresh());
  const healthBox = h("div", { class: "card", testid: "system-health" });
  const devices = devicesCard();
  const sysBox = h("div", { class: "grid-cards", testid: "system-info" });
  const pluginsBody = h("tbody", { testid: "plugin-list" });
  const conflictsBox = h("div", { testid: "plugin-conflicts" });
  const reload = h("button", { type: "button", i18n: "common.reload", testid: "system-reload" });
  panel.append(
    h("div", { class: "row between" }, h("h2", { i18n: "tab.system" }), reload),
    healthBox,
    devices.root,
    sysBox,
    settings.root,
    cluster.root,
    h(
      "div",
      { class: "card" },
      h("h3", { i18n: "system.plugins" }),
      conflictsBox,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "list" },
          h("thead", {}, h("tr", {}, ["system.plugin", "system.version", "system.source", "system.modalities", "system.hooks", "system.state"].map((k) => h("th", { scope: "col", i18n: k })))),
          pluginsBody,
        ),
      ),
    ),
  );

  const card = (titleKey, content, testid) => h("div", { class: "card", testid }, h("h3", { i18n: titleKey }), content);

  async function refresh() {
    const [sys, plugins] = await Promise.all([get("/api/system"), get("/api/plugins"), settings.load(), cluster.loadSettings()]);
    healthBox.replaceChildren(...healthView(sys.health));
    cluster.render(sys.cluster);
    const gpus = Array.isArray(sys.gpus) ? sys.gpus : [];
    const disk = Array.isArray(sys.disk) ? sys.disk : sys.disk ? [sys.disk] : [];
    sysBox.replaceChildren(
      card("system.cpu", kvTable(humanise(typeof sys.cpu === "object" ? sys.cpu : { cpu: sys.cpu })), "system-cpu"),
      card("system.ram", kvTable(humanise(typeof sys.ram === "object" ? sys.ram : { ram: sys.ram })), "system-ram"),
      card("system.gpu", gpus.length ? gpus.map((g) => kvTable(humanise(g))) : h("p", { class: "muted", i18n: "system.no_gpu" }), "system-gpu"),
      card("system.disk", disk.map((d) => kvTable(humanise(d))), "system-disk"),
      card("system.versions", kvTable({ python: sys.python, platform: sys.platform, ...(sys.versions || {}) }), "system-versions"),
    );
    devices.render(sys.devices);
    conflictsBox.replaceChildren(...(plugins.conflicts || []).map(conflictRow));
    pluginsBody.replaceChildren();
    for (const p of plugins.plugins || []) {
      const state = h("span", { class: p.error ? "badge badge-failed" : "badge badge-completed" });
      if (p.error) {
        const msg = typeof p.error === "string" ? { message: p.error, message_ja: p.error } : p.error.error || p.error;
        setBilingual(state, `読み込み失敗: ${msg.message_ja || msg.message}`, `failed to load: ${msg.message || msg.message_ja}`);
      } else {
        setBilingual(state, "読み込み済み", "loaded");
      }
      pluginsBody.append(
        h(
          "tr",
          { testid: `plugin-row-${p.name}` },
          h("td", { text: p.name }),
          h("td", { text: p.version || "-" }),
          h("td", { text: p.source || "-" }),
          h("td", { text: [...(p.modalities || []), ...(p.shadowed || []).map((m) => `(${m})`)].join(", ") || "-" }),
          h("td", { class: "small-text", text: (p.hooks || []).join(", ") }),
          h("td", {}, state),
        ),
      );
    }
  }

  /** Two plugins declare one modality: name both, say which one serves it, let the user choose. */
  function conflictRow(c) {
    const choice = select(c.plugins.map((name) => ({ value: name, label: name })), { testid: `plugin-owner-${c.modality}` });
    choice.value = c.owner;
    const apply = h("button", { type: "button", class: "small", i18n: "system.owner_apply", testid: `plugin-owner-apply-${c.modality}` });
    apply.addEventListener("click", () =>
      withBusy(apply, async () => {
        const current = (await get("/api/settings")).modality_owners || {};
        await put("/api/settings", { modality_owners: { ...current, [c.modality]: choice.value } });
        notifyKey("success", "system.owner_saved", { modality: c.modality, plugin: choice.value });
        await refresh();
      }),
    );
    const text = h("span", {});
    setBilingual(
      text,
      `モダリティ「${c.modality}」は ${c.plugins.join(" と ")} が宣言しています。使用中: ${c.owner}`,
      `The modality "${c.modality}" is declared by ${c.plugins.join(" and ")}. In use: ${c.owner}`,
    );
    return h("div", { class: "health-item health-warning row wrap", testid: `plugin-conflict-${c.modality}` }, text, choice, apply);
  }

  reload.addEventListener("click", () => withBusy(reload, refresh));
  return { onShow: refresh };
}
