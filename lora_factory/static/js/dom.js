// Small DOM helpers: building elements without innerHTML (no injection from file contents or
// model output), bilingual text that follows the language switch, notices, busy state, confirm.
import { t, getLang, applyI18n } from "./i18n.js";
import { clearFieldErrors, markFieldErrors } from "./errors.js";

const MAX_NOTICES = 3;
const INFO_MS = 6000;

/**
 * Build an element. attrs: i18n (key), ja/en (literal bilingual text), testid, on* handlers,
 * class, dataset-like "data-*", and any other attribute. children: nodes or strings.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "i18n") {
      el.dataset.i18n = value;
      el.textContent = t(value);
    } else if (key === "i18nPlaceholder") {
      el.dataset.i18nPlaceholder = value;
      el.placeholder = t(value);
    } else if (key === "i18nTitle") {
      el.dataset.i18nTitle = value;
      el.title = t(value);
    } else if (key === "i18nAria") {
      el.dataset.i18nAria = value;
      el.setAttribute("aria-label", t(value));
    } else if (key === "text") {
      el.textContent = value;
    } else if (key === "bi") {
      setBilingual(el, value.ja, value.en);
    } else if (key === "testid") {
      el.dataset.testid = value;
    } else if (key === "class") {
      el.className = value;
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "value") {
      el.value = value;
    } else if (key === "checked" || key === "disabled" || key === "selected" || key === "hidden") {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Text given in both languages (e.g. an API error): kept on the element so a switch re-renders it. */
export function setBilingual(el, ja, en) {
  el.dataset.textJa = ja ?? en ?? "";
  el.dataset.textEn = en ?? ja ?? "";
  el.textContent = getLang() === "ja" ? el.dataset.textJa : el.dataset.textEn;
  return el;
}

/** Set a translated key on an existing element (status labels, button captions). */
export function setI18n(el, key, params) {
  el.dataset.i18n = key;
  if (params) el.dataset.i18nParams = JSON.stringify(params);
  else delete el.dataset.i18nParams;
  el.textContent = t(key, params);
  return el;
}

let uid = 0;
/** A unique id, for <label for> pairs. */
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form row: <label for> + control, keyboard-usable by construction. */
export function field(labelKey, control, hintKey, ...extra) {
  if (!control.id) control.id = newId();
  const label = h("label", { for: control.id, i18n: labelKey });
  return h("div", { class: "field" }, label, control, hintKey ? h("small", { class: "hint", i18n: hintKey }) : null, ...extra);
}

export function select(options, attrs = {}) {
  const el = h("select", attrs);
  setOptions(el, options);
  return el;
}

/** options: [{value, label | i18n | bi}] */
export function setOptions(el, options, keep = true) {
  const previous = el.value;
  clear(el);
  for (const opt of options) {
    const o = h("option", { value: opt.value, i18n: opt.i18n, bi: opt.bi, text: opt.label });
    if (opt.disabled) o.disabled = true;
    el.append(o);
  }
  if (keep && options.some((o) => String(o.value) === previous)) el.value = previous;
  return el;
}

// ---- notices ---------------------------------------------------------------------------------

/** Show a readable notice. kind: error | info | success. Errors come from the API in both languages. */
export function notify(kind, ja, en, detailLines = []) {
  const area = document.getElementById("notices");
  const msg = h("span", { class: "notice-text" });
  setBilingual(msg, ja, en);
  const close = h("button", { type: "button", class: "notice-close", i18nAria: "common.close", text: "×" });
  const box = h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status", testid: "notice" },
    msg,
    detailLines.length ? h("ul", { class: "notice-detail" }, detailLines.map((l) => h("li", { text: l }))) : null,
    close,
  );
  close.addEventListener("click", () => box.remove());
  // an error belongs to the tab it came from: switching tabs takes it away (app.js dropNotices)
  box.dataset.tab = document.body.dataset.tab || "";
  area.prepend(box);
  while (area.children.length > MAX_NOTICES) area.lastElementChild.remove();
  if (kind !== "error") setTimeout(() => box.remove(), INFO_MS);
  return box;
}

/** Remove the notices raised on another tab than `tab` (information notices go by themselves). */
export function dropNotices(tab) {
  for (const box of document.querySelectorAll("#notices .notice")) if (box.dataset.tab !== tab) box.remove();
}

export function notifyKey(kind, key, params) {
  return notify(kind, t(key, params, "ja"), t(key, params, "en"));
}

/** Render any error (ApiError or a JS error) as a notice. */
export function showError(err) {
  if (err && err.code) {
    clearFieldErrors();
    // errors about form fields: one sentence each, naming the field by its label, the field marked
    const sentences = markFieldErrors(err, { ja: err.message_ja || err.message, en: err.message || err.message_ja }).filter(Boolean);
    if (sentences.length) {
      const box = notify("error", sentences.map((x) => x.ja).join(" "), sentences.map((x) => x.en).join(" "));
      box.dataset.code = err.code;
      return box;
    }
    const lines = [];
    const errs = err.detail && Array.isArray(err.detail.errors) ? err.detail.errors : [];
    for (const e of errs.slice(0, 5)) {
      if (e.file) lines.push(`${e.file}: ${e.reason}`);
      else if (e.line !== undefined && e.line !== null) lines.push(`${t("common.line")} ${e.line}: ${e.reason}`);
      else if (e.reason) lines.push(String(e.reason));
    }
    const box = notify("error", err.message_ja || err.message, err.message || err.message_ja, lines);
    box.dataset.code = err.code;
    return box;
  }
  console.warn(err);
  return notify("error", `エラー: ${err && err.message ? err.message : err}`, `Error: ${err && err.message ? err.message : err}`);
}

// ---- busy ------------------------------------------------------------------------------------

let busyCount = 0;
function renderBusy() {
  const el = document.getElementById("busy");
  if (el) el.hidden = busyCount === 0;
  document.body.classList.toggle("is-busy", busyCount > 0);
}

/** Run fn while showing the global busy indicator and disabling the button that started it. */
export async function withBusy(button, fn) {
  busyCount += 1;
  renderBusy();
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    busyCount -= 1;
    renderBusy();
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}

// ---- dialogs and the Back button ---------------------------------------------------------------

// An open dialog owns one browser-history entry, so Back closes the dialog instead of leaving the
// tab (or the app). app.js calls closeDialogOnBack() from its popstate handler.
const openDialogs = [];
let skipPops = 0;

/** Give an opened dialog a history entry; onBack closes it. Returns release(), called once it is closed. */
export function trackDialog(dlg, onBack) {
  const entry = { dlg, onBack, released: false };
  openDialogs.push(entry);
  window.history.pushState({ ...(window.history.state || {}), dialog: true }, "", window.location.href);
  return () => {
    if (entry.released) return;
    entry.released = true;
    const i = openDialogs.indexOf(entry);
    if (i < 0) return; // closed by Back: its history entry is already gone
    openDialogs.splice(i, 1);
    if (window.history.state && window.history.state.dialog) {
      skipPops += 1;
      window.history.back();
    }
  };
}

/** popstate: close the top dialog (true), swallow our own history.back (true), or leave it to the tabs (false). */
export function closeDialogOnBack() {
  if (skipPops > 0) {
    skipPops -= 1;
    return true;
  }
  const top = openDialogs.pop();
  if (!top) return false;
  top.released = true;
  top.onBack();
  return true;
}

// ---- confirm dialog --------------------------------------------------------------------------

/** A modal confirmation (a <dialog>, keyboard-usable); resolves true when the user confirms. */
export function confirmDialog(ja, en, okKey = "common.delete") {
  return new Promise((resolve) => {
    const text = h("p", {});
    setBilingual(text, ja, en);
    const ok = h("button", { type: "button", class: "danger", i18n: okKey, testid: "confirm-ok" });
    const cancel = h("button", { type: "button", i18n: "common.cancel", testid: "confirm-cancel" });
    const dlg = h("dialog", { class: "confirm", testid: "confirm-dialog" }, text, h("div", { class: "row end" }, cancel, ok));
    document.body.append(dlg);
    let release = () => {};
    const done = (v) => {
      release();
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    ok.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dlg.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      done(false);
    });
    dlg.showModal();
    release = trackDialog(dlg, () => done(false));
    cancel.focus();
  });
}

/**
 * A modal asking for one line of text (an output name): resolves the trimmed text, or null when
 * the user cancels. labelKey / okKey are i18n keys; the field is labelled and gets the focus.
 */
export function promptDialog(labelKey, initial = "", okKey = "common.ok", testid = "prompt") {
  return new Promise((resolve) => {
    const input = h("input", { type: "text", value: initial, autocomplete: "off", testid: `${testid}-input`, required: true });
    const ok = h("button", { type: "submit", class: "primary", i18n: okKey, testid: `${testid}-ok` });
    const cancel = h("button", { type: "button", i18n: "common.cancel", testid: `${testid}-cancel` });
    const form = h("form", { method: "dialog", novalidate: true }, field(labelKey, input), h("div", { class: "row end" }, cancel, ok));
    const dlg = h("dialog", { class: "confirm", testid: `${testid}-dialog` }, form);
    document.body.append(dlg);
    let release = () => {};
    const done = (v) => {
      release();
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) {
        input.focus();
        return;
      }
      done(value);
    });
    cancel.addEventListener("click", () => done(null));
    dlg.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      done(null);
    });
    dlg.showModal();
    release = trackDialog(dlg, () => done(null));
    input.select();
  });
}

/** A modal that shows some content (a log, a lineage) with a close button. */
export function showModal(titleKey, content) {
  const close = h("button", { type: "button", i18n: "common.close", testid: "modal-close" });
  const dlg = h("dialog", { class: "modal", testid: "modal" }, h("h3", { i18n: titleKey, tabindex: "-1", autofocus: true }), content, h("div", { class: "row end" }, close));
  document.body.append(dlg);
  let release = () => {};
  const done = () => {
    release();
    dlg.close();
    dlg.remove();
  };
  close.addEventListener("click", done);
  dlg.addEventListener("close", () => {
    release();
    dlg.remove();
  });
  dlg.showModal();
  release = trackDialog(dlg, done);
  // a long content (adapter details) opens at its top, not scrolled to the close button
  dlg.scrollTop = 0;
  return dlg;
}

// ---- formatting ------------------------------------------------------------------------------

export function formatBytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "-";
  let v = Number(n);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "-";
  let s = Math.max(0, Math.round(Number(seconds)));
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  s -= mm * 60;
  if (hh) return `${hh}:${String(mm).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
  return `${mm}:${String(s).padStart(2, "0")}`;
}

export function formatNumber(n, digits = 4) {
  if (n === null || n === undefined || n === "") return "-";
  const v = Number(n);
  if (Number.isNaN(v)) return String(n);
  if (Number.isInteger(v)) return v.toLocaleString();
  // 16830.4 tokens/s reads "16,830", not "1.683e+4"; a learning rate 0.0002, not "0.0002000"
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString();
  if (Math.abs(v) < 1e-4) return v.toExponential(1);
  return String(Number(v.toPrecision(digits)));
}

export function formatDate(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// the generic key/value table lives with the other "results in words" helpers
export { kvTable } from "./readable.js";

/** Re-apply translations below root (after the language switch). */
export function relabel(root = document) {
  applyI18n(root);
}

/** A default output name: prefix + local timestamp (safe characters only). */
export function defaultName(prefix) {
  const d = new Date();
  const p = (x) => String(x).padStart(2, "0");
  return `${prefix}_${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}_${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}
