// The health banner: what keeps the server from working (the job scheduler stopped or failing, a
// damaged settings.json, a nearly full disk) and what the user must be told once (a damaged job
// database that was rebuilt). It polls GET /api/health, which is cheap. When the server is exposed
// beyond loopback and asks for its token, the banner asks for it and opens /?token=…, which stores
// it as a cookie (the API then accepts every request of this page, event streams included).
import { ApiError, get } from "./api.js";
import { clear, h, setBilingual } from "./dom.js";

const DISMISSED_KEY = "lora_factory.dismissed_notices";
const POLL_MS = 15000;

function dismissed() {
  try {
    return new Set(JSON.parse(sessionStorage.getItem(DISMISSED_KEY) || "[]"));
  } catch {
    return new Set();
  }
}

function dismiss(id) {
  const set = dismissed();
  set.add(id);
  try {
    sessionStorage.setItem(DISMISSED_KEY, JSON.stringify([...set]));
  } catch {
    // not remembered: shown again after a reload
  }
}

function noticeId(item) {
  return `${item.code}:${(item.detail && item.detail.moved_to) || ""}`;
}

function line(item, kind, onDismiss) {
  const text = h("span", { class: "notice-text" });
  setBilingual(text, item.message_ja || item.message, item.message || item.message_ja);
  const row = h("div", { class: `health-item health-${kind}`, testid: `health-${item.code}`, role: kind === "error" ? "alert" : "status" }, text);
  if (onDismiss) {
    const close = h("button", { type: "button", class: "small", i18n: "health.dismiss", testid: "health-dismiss" });
    close.addEventListener("click", onDismiss);
    row.append(" ", close);
  }
  return row;
}

function tokenForm(err) {
  const input = h("input", { type: "password", autocomplete: "off", spellcheck: "false", testid: "token-input", i18nPlaceholder: "token.placeholder" });
  const submit = h("button", { type: "submit", class: "primary", i18n: "token.submit", testid: "token-submit" });
  const text = h("p", {});
  setBilingual(text, err.message_ja, err.message);
  const form = h("form", { class: "health-item health-error token-form", testid: "token-form" }, h("strong", { i18n: "token.title" }), text, h("div", { class: "row" }, input, submit));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (input.value.trim()) window.location.assign(`/?token=${encodeURIComponent(input.value.trim())}`);
  });
  return form;
}

export function startHealthBanner() {
  const box = document.getElementById("health-banner");
  if (!box) return;
  let timer = null;

  async function refresh() {
    let health;
    try {
      health = await get("/api/health");
    } catch (err) {
      if (err instanceof ApiError && (err.code === "TOKEN_REQUIRED" || err.code === "TOKEN_INVALID")) {
        clear(box).append(tokenForm(err));
        box.hidden = false;
        return; // no polling until the token is given
      }
      timer = setTimeout(refresh, POLL_MS); // an unreachable server is reported by the failing call itself
      return;
    }
    const seen = dismissed();
    const items = [];
    for (const p of health.problems || []) items.push(line(p, p.level === "warning" ? "warning" : "error"));
    for (const n of health.notices || []) {
      const id = noticeId(n);
      if (!seen.has(id)) items.push(line(n, "warning", () => { dismiss(id); refresh(); }));
    }
    clear(box).append(...items);
    box.hidden = items.length === 0;
    box.dataset.ok = String(Boolean(health.ok));
    timer = setTimeout(refresh, POLL_MS);
  }

  refresh();
  return () => clearTimeout(timer);
}
