// Field errors in words: one place that turns the API's per-field errors (pydantic's 422 list,
// INVALID_TRAIN_PARAMS, a LoRAFactoryError with detail.field) into a sentence that names the field
// by the label the user sees, and marks that field on the form. Every form gets it through
// showError (dom.js), so no tab repeats the translation.

// pydantic's English reasons -> a sentence in both languages ({label} is the field's own label).
// The regex, the limits' raw wording and "undefined" never reach the user.
const REASONS = [
  [/^Field required/i, () => ["「{label}」を入力してください。", "Please fill in \"{label}\"."]],
  [/^String should match pattern/i, () => ["「{label}」の形式が正しくありません。{example}", "\"{label}\" is not in the expected form.{example}"]],
  [/^String should have at least (\d+)/i, (m) => (m[1] === "1" ? ["「{label}」が空です。入力してください。", "\"{label}\" is empty. Please fill it in."] : [`「{label}」は ${m[1]} 文字以上で入力してください。`, `"{label}" needs at least ${m[1]} characters.`])],
  [/^String should have at most (\d+)/i, (m) => [`「{label}」は ${m[1]} 文字以内で入力してください。`, `"{label}" may have at most ${m[1]} characters.`]],
  [/^Input should be a valid integer/i, () => ["「{label}」には整数を入力してください。", "\"{label}\" must be a whole number."]],
  [/^Input should be a valid (number|float)/i, () => ["「{label}」には数値を入力してください。", "\"{label}\" must be a number."]],
  [/^Input should be a valid boolean/i, () => ["「{label}」はオン / オフで指定してください。", "\"{label}\" must be on or off."]],
  [/^Input should be a valid (string|list|dictionary|array|object)/i, () => ["「{label}」の値の種類が正しくありません。", "\"{label}\" has the wrong kind of value."]],
  [/^Input should be greater than or equal to ([^\s,]+)/i, (m) => [`「{label}」は ${m[1]} 以上にしてください。`, `"{label}" must be ${m[1]} or more.`]],
  [/^Input should be greater than ([^\s,]+)/i, (m) => [`「{label}」は ${m[1]} より大きくしてください。`, `"{label}" must be more than ${m[1]}.`]],
  [/^Input should be less than or equal to ([^\s,]+)/i, (m) => [`「{label}」は ${m[1]} 以下にしてください。`, `"{label}" must be ${m[1]} or less.`]],
  [/^Input should be less than ([^\s,]+)/i, (m) => [`「{label}」は ${m[1]} より小さくしてください。`, `"{label}" must be less than ${m[1]}.`]],
  [/^Input should be (('[^']*'(, | or )?)+)/i, (m) => [`「{label}」は次のどれかにしてください: ${m[1].replaceAll(" or ", ", ")}`, `"{label}" must be one of: ${m[1]}`]],
  [/^Extra inputs are not permitted/i, () => ["「{label}」という項目はありません。", "There is no setting called \"{label}\"."]],
];

/** The visible panel: a field is looked for there first (the form the user just submitted). */
function activeRoots() {
  const roots = [];
  const dialog = [...document.querySelectorAll("dialog[open]")].pop();
  if (dialog) roots.push(dialog);
  const panel = document.querySelector("#panels > .panel:not([hidden])");
  if (panel) roots.push(panel);
  return roots;
}

function visibleEnough(el) {
  // a control inside a closed <details> still counts (it is opened when marked); a hidden panel does not
  return !el.closest("[hidden]");
}

/** The form control for an API field name, in the dialog or tab the user is on; null if none. */
export function findControl(field) {
  if (!field) return null;
  const last = String(field).split(".").pop();
  const dashed = last.replaceAll("_", "-");
  const selectors = [`[name="${last}"]`, `[data-field="${last}"]`, `[data-testid$="-${last}"]`, `[data-testid$="-${dashed}"]`];
  for (const root of activeRoots()) {
    for (const sel of selectors) {
      const found = [...root.querySelectorAll(sel)].find((el) => /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName) && visibleEnough(el));
      if (found) return found;
    }
  }
  return null;
}

/** The label the user sees next to a control (without a trailing "*"), or null. */
export function labelText(control) {
  if (!control) return null;
  const label = control.id ? document.querySelector(`label[for="${CSS.escape(control.id)}"]`) : null;
  const text = (label && label.textContent) || control.getAttribute("aria-label") || "";
  const clean = text.replace(/\s*\*\s*$/, "").trim();
  return clean || null;
}

/**
 * {ja, en} sentence for one field error; the label is the control's, else the field name; example
 * (the control's placeholder, "e.g. Qwen/…") shows the expected form where a pattern was not met.
 */
export function fieldSentence(field, reason, label, example = "") {
  const name = label || (field ? String(field).split(".").pop() : "");
  const text = String(reason || "");
  for (const [re, make] of REASONS) {
    const m = text.match(re);
    if (m) {
      const [ja, en] = make(m);
      const fill = (x) => x.replaceAll("{label}", name).replaceAll("{example}", example ? ` (${example})` : "");
      return { ja: fill(ja), en: fill(en) };
    }
  }
  // an unknown reason: said plainly, with pydantic's prefix and anything that looks like a regex left out
  const plain = text.replace(/^Value error,\s*/i, "").replace(/'\^[^']*'/g, "").replace(/\s+/g, " ").trim();
  return { ja: `「${name}」: ${plain}`, en: `"${name}": ${plain}` };
}

/** The per-field errors an API error carries: [{field, reason}] (possibly empty). */
export function fieldErrors(err) {
  const detail = err && err.detail;
  if (!detail || typeof detail !== "object") return [];
  const list = Array.isArray(detail.errors) ? detail.errors.filter((e) => e && e.field) : [];
  if (list.length) return list.map((e) => ({ field: e.field, reason: e.reason ?? e.msg ?? "" }));
  if (detail.field && !Array.isArray(detail.errors)) return [{ field: detail.field, reason: detail.reason ?? null }];
  return [];
}

/** Remove the marks left by an earlier error. */
export function clearFieldErrors(root = document) {
  for (const el of root.querySelectorAll(".is-invalid")) {
    el.classList.remove("is-invalid");
    el.removeAttribute("aria-invalid");
  }
  for (const el of root.querySelectorAll(".field-error")) el.remove();
}

/**
 * Mark the fields an error names: red outline, aria-invalid, the sentence right below the control,
 * the first one scrolled into view. Returns [{ja, en}] sentences (one per error) for the notice.
 */
export function markFieldErrors(err, message) {
  const errors = fieldErrors(err);
  const sentences = [];
  let first = null;
  for (const e of errors) {
    const control = findControl(e.field);
    const label = labelText(control);
    const sentence = e.reason ? fieldSentence(e.field, e.reason, label, control ? control.placeholder || "" : "") : message;
    sentences.push(sentence);
    if (!control || !sentence) continue;
    control.classList.add("is-invalid");
    control.setAttribute("aria-invalid", "true");
    const details = control.closest("details");
    if (details) details.open = true;
    const note = document.createElement("small");
    note.className = "field-error";
    note.dataset.testid = "field-error";
    note.dataset.textJa = sentence.ja;
    note.dataset.textEn = sentence.en;
    note.textContent = document.documentElement.lang === "en" ? sentence.en : sentence.ja;
    note.setAttribute("role", "alert");
    const holder = control.closest(".field") || control.parentElement;
    holder.querySelectorAll(":scope > .field-error").forEach((x) => x.remove());
    holder.append(note);
    const unmark = () => {
      control.classList.remove("is-invalid");
      control.removeAttribute("aria-invalid");
      note.remove();
    };
    control.addEventListener("input", unmark, { once: true });
    control.addEventListener("change", unmark, { once: true });
    if (!first) first = control;
  }
  if (first) first.scrollIntoView({ block: "center" });
  return sentences;
}
