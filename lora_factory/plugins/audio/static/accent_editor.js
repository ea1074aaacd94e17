// アクセント編集 / Accent editor: under the reading preview, each accent phrase with its morae drawn
// high or low; click the mora after which the pitch falls (or 平板 for flat), then save the phrase to the
// user dictionary with its reading and accent type. The dictionary's accents then reach synthesis as
// pitch marks in the text (see docs/audio.md for what a model does with them). Its own file, so the
// studio's layout can change without touching it.
import { get, put } from "/static/js/api.js";
import { clear, h, notify, withBusy } from "/static/js/dom.js";

const bi = (ja, en) => ({ bi: { ja, en } });

// Tokyo-style pitch: type 1 high then low; type 0 low then high to the end; type n low, high up to n, low
export function isHigh(accent, index) {
  const k = index + 1;
  if (accent === 1) return k === 1;
  if (accent === 0) return k > 1;
  return k > 1 && k <= accent;
}

function phraseRow(phrase, onSaved) {
  let accent = phrase.accent;
  const morae = h("span", { class: "accent-morae" });
  const flat = h("button", { type: "button", testid: "accent-flat", ...bi("平板", "Flat") });
  const save = h("button", { type: "button", testid: "accent-save", ...bi("辞書に保存", "Save to the dictionary") });
  const type = h("span", { class: "muted", testid: "accent-type" });
  function render() {
    clear(morae);
    phrase.morae.forEach((mora, i) => {
      const button = h("button", { type: "button", testid: "accent-mora", class: `mora ${isHigh(accent, i) ? "hi" : "lo"}`,
        title: `${i + 1}` }, mora);
      button.style.verticalAlign = isHigh(accent, i) ? "0.5em" : "-0.2em";
      button.addEventListener("click", () => {
        accent = i + 1; // the pitch falls after this mora
        render();
      });
      morae.append(button);
    });
    type.textContent = `${accent}`;
  }
  flat.addEventListener("click", () => {
    accent = 0;
    render();
  });
  save.addEventListener("click", () => withBusy(save, async () => {
    const entries = (await get("/api/audio/dictionary")).entries || [];
    const entry = { surface: phrase.surface, reading: phrase.morae.join(""), accent };
    const kept = entries.filter((e) => e.surface !== entry.surface);
    await put("/api/audio/dictionary", { entries: [...kept, entry] });
    notify("info", `「${entry.surface}」のアクセント ${accent} を辞書に保存しました`, `Saved accent ${accent} of "${entry.surface}"`);
    if (onSaved) await onSaved();
  }));
  render();
  return h("div", { class: "accent-phrase row", testid: "accent-phrase" },
    h("span", { class: "accent-surface", testid: "accent-surface" }, phrase.surface, phrase.user ? " ★" : ""),
    morae, type, flat, save);
}

export function accentEditor(phrases, onSaved) {
  const box = h("div", { class: "accent-editor", testid: "accent-editor" },
    h("div", { class: "muted", ...bi("下がる直前のモーラをクリック（★は辞書で設定済み）", "Click the mora after which the pitch falls (★: set in your dictionary)") }));
  for (const phrase of phrases || []) box.append(phraseRow(phrase, onSaved));
  return box;
}
