// Japanese first, English on demand; the choice is remembered in localStorage.
// Translated elements carry data-i18n (a key) or data-text-ja / data-text-en (text that arrived in
// both languages, such as API errors), so a switch relabels the page without re-rendering it.
import ja from "../i18n/ja.js";
import en from "../i18n/en.js";

const DICTS = { ja, en };
const STORAGE_KEY = "lora_factory.lang";
let lang = "ja";

try {
  const saved = window.localStorage.getItem(STORAGE_KEY);
  if (saved === "ja" || saved === "en") lang = saved;
} catch {
  // localStorage can be disabled (private mode): Japanese stays the default.
}

export function getLang() {
  return lang;
}

export function setLang(next) {
  lang = next === "en" ? "en" : "ja";
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not persisted, still switched
  }
  document.documentElement.lang = lang;
  applyI18n(document);
}

/** Translate key; {name} placeholders are filled from params. Falls back to Japanese, then the key. */
export function t(key, params, forLang) {
  const dict = DICTS[forLang || lang];
  let text = dict[key] ?? DICTS.ja[key] ?? key;
  if (params) {
    for (const [k, v] of Object.entries(params)) text = text.replaceAll(`{${k}}`, String(v));
  }
  return text;
}

/** Pick the label of an object that has label_ja / label_en (modalities, refine operations). */
export function labelOf(obj, fallback = "") {
  if (!obj) return fallback;
  return (lang === "ja" ? obj.label_ja || obj.label_en : obj.label_en || obj.label_ja) || fallback;
}

export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    const params = el.dataset.i18nParams ? JSON.parse(el.dataset.i18nParams) : undefined;
    el.textContent = t(el.dataset.i18n, params);
  }
  for (const el of root.querySelectorAll("[data-text-ja]")) {
    el.textContent = lang === "ja" ? el.dataset.textJa : el.dataset.textEn;
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
  document.title = t("app.title");
}
