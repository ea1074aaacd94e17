// The shell: modality switch (from GET /api/modalities), tabs, language switch. Each tab is a
// module with mount(panel, app) -> {onShow?}; it is mounted once per modality and told when shown.
// Plugins' front-end modules (GET /api/ui/modules) are imported before the tab bar is built: they
// register their tabs (tabs/registry.js) and views of the 推論 tab (views/registry.js).
import { get } from "./api.js";
import { clear, closeDialogOnBack, dropNotices, h, setBilingual, showError } from "./dom.js";
import { restoreTraining, startJobsIndicator } from "./running.js";
import { startHealthBanner } from "./health.js";
import { applyI18n, getLang, labelOf, setLang, t } from "./i18n.js";
import * as wizard from "./tabs/wizard.js";
import * as models from "./tabs/models.js";
import * as datasets from "./tabs/datasets.js";
import * as refine from "./tabs/refine.js";
import * as train from "./tabs/train.js";
import * as historyTab from "./tabs/history.js";
import * as infer from "./tabs/infer.js";
import * as system from "./tabs/system.js";
import { pluginTabs } from "./tabs/registry.js";

const HOST_TABS = [
  ["wizard", wizard],
  ["models", models],
  ["datasets", datasets],
  ["refine", refine],
  ["train", train],
  ["history", historyTab],
  ["infer", infer],
  ["system", system],
];
// the host's tabs, then the plugins' before 設定 / System (filled by loadPluginModules)
let TABS = HOST_TABS;
const PLUGIN_TAB = new Map(); // tab id -> {modality, label_ja, label_en}
// A modality's plugin may bring its own module for a host tab (same id, same mount contract).
const MODALITY_TABS = {}; // modality -> {tab id -> module}
const MODALITY_KEY = "lora_factory.modality";
const MODALITY_FREE_TABS = new Set(["history", "system"]);

const app = {
  modality: null,
  modalities: [],
  paths: null,
  mounted: {},
  current: null,
  /** The description of the chosen modality (presets, schemas, refine operations ...). */
  info() {
    return this.modalities.find((m) => m.id === this.modality) || { id: this.modality, presets: {} };
  },
  supports(feature) {
    const info = this.info();
    return Array.isArray(info.supports) ? info.supports.includes(feature) : false;
  },
  goTab(id) {
    showTab(id, { push: true });
  },
  /** Open the 学習 tab with a job to follow (from the wizard or the history). */
  followTraining(jobId) {
    showTab("train", { push: true });
    const mounted = this.mounted.train;
    if (mounted && mounted.follow) mounted.follow(jobId);
  },
};

function buildTabBar() {
  const bar = document.getElementById("tabs");
  clear(bar);
  for (const [id] of TABS) {
    const btn = h("button", {
      type: "button",
      role: "tab",
      id: `tab-${id}`,
      testid: `tab-${id}`,
      "aria-controls": `panel-${id}`,
      "aria-selected": "false",
      ...(PLUGIN_TAB.has(id) ? {} : { i18n: `tab.${id}` }),
      onclick: () => showTab(id, { push: true }),
    });
    const plugin = PLUGIN_TAB.get(id);
    if (plugin) setBilingual(btn, plugin.label_ja, plugin.label_en);
    btn.addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
      const ids = TABS.map(([x]) => x);
      const i = ids.indexOf(id) + (ev.key === "ArrowRight" ? 1 : -1);
      const next = ids[(i + ids.length) % ids.length];
      showTab(next, { push: true });
      document.getElementById(`tab-${next}`).focus();
    });
    bar.append(btn);
  }
}

function buildModalitySwitch() {
  const nav = document.getElementById("modalities");
  clear(nav);
  for (const m of app.modalities) {
    const btn = h("button", {
      type: "button",
      class: "modality",
      testid: `modality-${m.id}`,
      "aria-pressed": String(m.id === app.modality),
      "data-available": String(m.available !== false),
      onclick: () => chooseModality(m.id),
    });
    const label = h("span", {});
    setBilingual(label, m.label_ja || m.id, m.label_en || m.id);
    btn.append(label);
    if (m.available === false) {
      btn.classList.add("is-unavailable");
      const why = h("span", { class: "sr-only" });
      setBilingual(why, `(利用不可: ${m.reason || ""})`, `(unavailable: ${m.reason_en || m.reason || ""})`);
      btn.append(why);
      btn.title = (getLang() === "ja" ? m.reason : m.reason_en || m.reason) || t("app.unavailable");
    }
    nav.append(btn);
  }
}

function renderUnavailable() {
  const box = document.getElementById("modality-unavailable");
  const info = app.info();
  if (info.available === false) {
    box.hidden = false;
    clear(box);
    const title = h("strong", {});
    setBilingual(title, `「${info.label_ja || info.id}」は現在利用できません。`, `"${info.label_en || info.id}" is not available right now.`);
    const reason = h("span", {});
    setBilingual(reason, info.reason || "", info.reason_en || info.reason || "");
    box.append(title, " ", reason);
  } else {
    box.hidden = true;
  }
}

function chooseModality(id) {
  if (app.modality === id && Object.keys(app.mounted).length) return;
  app.modality = id;
  try {
    localStorage.setItem(MODALITY_KEY, id);
  } catch {
    // not persisted
  }
  for (const btn of document.querySelectorAll("#modalities .modality")) {
    btn.setAttribute("aria-pressed", String(btn.dataset.testid === `modality-${id}`));
  }
  document.body.dataset.modality = id;
  // a plugin's tab for another modality (the voice studio outside audio) is not offered
  for (const [tabId, plugin] of PLUGIN_TAB) {
    const offered = !plugin.modality || plugin.modality === id;
    document.getElementById(`tab-${tabId}`).hidden = !offered;
    if (app.current === tabId && !offered) app.current = "wizard";
  }
  renderUnavailable();
  // Remount every tab for the new modality: lists, presets and schemas all depend on it.
  for (const mounted of Object.values(app.mounted)) if (mounted && mounted.destroy) mounted.destroy();
  app.mounted = {};
  const panels = document.getElementById("panels");
  clear(panels);
  for (const [tabId] of TABS) {
    panels.append(h("section", { id: `panel-${tabId}`, role: "tabpanel", "aria-labelledby": `tab-${tabId}`, class: "panel", hidden: true, testid: `panel-${tabId}` }));
  }
  showTab(app.current || initialTab());
}

function initialTab() {
  const fromHash = window.location.hash.replace("#", "");
  return TABS.some(([x]) => x === fromHash) ? fromHash : "wizard";
}

/**
 * Show a tab. push: a user's switch gets its own history entry, so Back / Forward move between
 * tabs; the first tab and a tab reached by Back replace the entry instead.
 */
function showTab(id, { push = false } = {}) {
  const changed = app.current !== id;
  app.current = id;
  document.body.dataset.tab = id;
  if (changed) dropNotices(id);
  if (window.location.hash !== `#${id}`) {
    if (push) window.history.pushState({ tab: id }, "", `#${id}`);
    else window.history.replaceState({ tab: id }, "", `#${id}`);
  }
  for (const [tabId, mod] of TABS) {
    const panel = document.getElementById(`panel-${tabId}`);
    const btn = document.getElementById(`tab-${tabId}`);
    const active = tabId === id;
    btn.setAttribute("aria-selected", String(active));
    btn.tabIndex = active ? 0 : -1;
    if (!panel) continue;
    panel.hidden = !active;
    if (active) {
      if (!app.mounted[tabId]) {
        try {
          const impl = (MODALITY_TABS[app.modality] || {})[tabId] || mod;
          app.mounted[tabId] = impl.mount(panel, app) || {};
          if (tabId === "train") restoreTraining(app);
        } catch (err) {
          showError(err);
          app.mounted[tabId] = {};
        }
      }
      const mounted = app.mounted[tabId];
      // An unavailable modality has nothing to list: only the tabs that do not depend on it refresh.
      const usable = app.info().available !== false || MODALITY_FREE_TABS.has(tabId);
      if (mounted.onShow && usable) Promise.resolve(mounted.onShow()).catch(showError);
    }
  }
}

/** Import each plugin's front-end module; a broken one is reported and skipped, never fatal. */
async function loadPluginModules() {
  let modules = [];
  try {
    modules = (await get("/api/ui/modules")).modules || [];
  } catch (err) {
    showError(err);
  }
  for (const m of modules) {
    try {
      await import(m.url);
    } catch (err) {
      showError(new Error(`${m.plugin}: ${m.url}: ${err.message}`));
    }
  }
  for (const tab of pluginTabs()) {
    if (HOST_TABS.some(([id]) => id === tab.id)) {
      if (tab.modality) (MODALITY_TABS[tab.modality] ||= {})[tab.id] = tab.module;
    } else if (!PLUGIN_TAB.has(tab.id)) {
      PLUGIN_TAB.set(tab.id, tab);
    }
  }
  const plugins = [...PLUGIN_TAB.values()].map((tab) => [tab.id, tab.module]);
  TABS = [...HOST_TABS.slice(0, -1), ...plugins, HOST_TABS[HOST_TABS.length - 1]];
}

async function start() {
  document.documentElement.lang = getLang();
  applyI18n(document);
  document.getElementById("lang-toggle").addEventListener("click", () => {
    setLang(getLang() === "ja" ? "en" : "ja");
    for (const mounted of Object.values(app.mounted)) if (mounted && mounted.onLang) mounted.onLang();
  });
  await loadPluginModules();
  buildTabBar();
  startHealthBanner();
  try {
    const [mods, paths] = await Promise.all([get("/api/modalities"), get("/utils/paths")]);
    app.modalities = mods.modalities || [];
    app.paths = paths;
  } catch (err) {
    showError(err);
    app.modalities = [{ id: "text", label_ja: "テキスト", label_en: "Text", presets: {} }];
  }
  let chosen = null;
  try {
    chosen = localStorage.getItem(MODALITY_KEY);
  } catch {
    chosen = null;
  }
  if (!app.modalities.some((m) => m.id === chosen)) {
    const firstAvailable = app.modalities.find((m) => m.available !== false) || app.modalities[0];
    chosen = firstAvailable ? firstAvailable.id : "text";
  }
  app.modality = chosen;
  buildModalitySwitch();
  chooseModality(chosen);
  startJobsIndicator(app);
  document.body.dataset.ready = "true";
}

// Back / Forward: an open dialog closes first; otherwise the tab of the entry is shown.
window.addEventListener("popstate", () => {
  if (closeDialogOnBack()) return;
  const id = window.location.hash.replace("#", "");
  if (id !== app.current && TABS.some(([x]) => x === id)) showTab(id);
});

window.addEventListener("hashchange", () => {
  const id = window.location.hash.replace("#", "");
  if (id !== app.current && TABS.some(([x]) => x === id)) showTab(id);
});

window.addEventListener("unhandledrejection", (ev) => {
  showError(ev.reason);
  ev.preventDefault();
});

export { app, labelOf };
start();
