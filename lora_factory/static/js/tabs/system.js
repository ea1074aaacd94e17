// システム: CPU / RAM / GPU / VRAM / disk / library versions (GET /api/system) and the plugins
// with their load errors (GET /api/plugins): the first place to look when something is off.
import { get } from "../api.js";
import { formatBytes, h, kvTable, setBilingual, withBusy } from "../dom.js";

function humanise(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj || {})) {
    out[k] = typeof v === "number" && /bytes|total|free|used|available|memory|vram/i.test(k) && v > 4096 ? formatBytes(v) : v;
  }
  return out;
}

export function mount(panel) {
  const sysBox = h("div", { class: "grid-cards", testid: "system-info" });
  const pluginsBody = h("tbody", { testid: "plugin-list" });
  const reload = h("button", { type: "button", i18n: "common.reload", testid: "system-reload" });
  panel.append(
    h("div", { class: "row between" }, h("h2", { i18n: "tab.system" }), reload),
    sysBox,
    h(
      "div",
      { class: "card" },
      h("h3", { i18n: "system.plugins" }),
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
    const [sys, plugins] = await Promise.all([get("/api/system"), get("/api/plugins")]);
    const gpus = Array.isArray(sys.gpus) ? sys.gpus : [];
    const disk = Array.isArray(sys.disk) ? sys.disk : sys.disk ? [sys.disk] : [];
    sysBox.replaceChildren(
      card("system.cpu", kvTable(humanise(typeof sys.cpu === "object" ? sys.cpu : { cpu: sys.cpu })), "system-cpu"),
      card("system.ram", kvTable(humanise(typeof sys.ram === "object" ? sys.ram : { ram: sys.ram })), "system-ram"),
      card("system.gpu", gpus.length ? gpus.map((g) => kvTable(humanise(g))) : h("p", { class: "muted", i18n: "system.no_gpu" }), "system-gpu"),
      card("system.disk", disk.map((d) => kvTable(humanise(d))), "system-disk"),
      card("system.versions", kvTable({ python: sys.python, platform: sys.platform, ...(sys.versions || {}) }), "system-versions"),
    );
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
          h("td", { text: (p.modalities || []).join(", ") || "-" }),
          h("td", { class: "small-text", text: (p.hooks || []).join(", ") }),
          h("td", {}, state),
        ),
      );
    }
  }

  reload.addEventListener("click", () => withBusy(reload, refresh));
  return { onShow: refresh };
}
