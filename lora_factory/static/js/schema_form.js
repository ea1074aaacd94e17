// A form generated from a plugin's JSON schema (refine operation params, train params), so a
// third-party plugin gets a usable UI without shipping any front-end code. Understands what
// pydantic emits: `$ref` into the root's `$defs`, nullable `anyOf [X, null]`, `const`, arrays of
// enums (checkboxes) and discriminated `oneOf` / `anyOf` of objects (a select on the discriminator
// with the chosen variant's fields as a nested sub-form, read back as a nested object).
import { getLang } from "./i18n.js";
import { h, newId } from "./dom.js";

const MAX_DEPTH = 8; // a self-referencing schema must not recurse forever

function titleOf(name, prop, lang = getLang()) {
  if (lang === "ja") return prop.title_ja || prop.label_ja || prop.title || name;
  return prop.title_en || prop.label_en || prop.title || name;
}

function describe(prop, lang = getLang()) {
  if (lang === "ja") return prop.description_ja || prop.description || "";
  return prop.description_en || prop.description || "";
}

/** An element whose text follows the language switch (data-text-ja / data-text-en). */
function bi(tag, attrs, ja, en) {
  return h(tag, { ...attrs, bi: { ja, en } });
}

const biTitle = (tag, attrs, name, prop, suffix = "") => bi(tag, attrs, `${titleOf(name, prop, "ja")}${suffix}`, `${titleOf(name, prop, "en")}${suffix}`);
const biHint = (prop) => (describe(prop, "ja") || describe(prop, "en") ? bi("small", { class: "hint" }, describe(prop, "ja"), describe(prop, "en")) : null);

/** The label of an enum value: the schema's ``enum_labels_ja`` / ``enum_labels_en`` ({value: label}), or the value. */
function enumLabel(p, value, lang) {
  const labels = (lang === "ja" ? p.enum_labels_ja : p.enum_labels_en) || p.enum_labels_en || p.enum_labels_ja || {};
  const shown = labels[String(value)];
  return shown ? `${shown}` : String(value);
}

/** The form's own label of a parameter (for the preset's contents): its title in ``lang``. */
export function paramTitle(schema, name, lang = getLang()) {
  const prop = ((schema && schema.properties) || {})[name];
  return prop ? titleOf(name, deref(prop, schema), lang) : name;
}

/** Follow a local `$ref` ("#/$defs/X", "#/definitions/X"); the referring node's own keys win. */
function deref(prop, root, depth = 0) {
  if (!prop || typeof prop !== "object" || !prop.$ref || depth > MAX_DEPTH) return prop || {};
  const ref = String(prop.$ref);
  let target = null;
  if (ref.startsWith("#/")) {
    target = root;
    for (const part of ref.slice(2).split("/")) {
      target = target && typeof target === "object" ? target[part.replaceAll("~1", "/").replaceAll("~0", "~")] : undefined;
    }
  }
  const { $ref: _ignored, ...own } = prop;
  return { ...deref(target || {}, root, depth + 1), ...own };
}

const isNull = (s) => s && (s.type === "null" || (s.const === null && !s.type));

/**
 * Normalise one property: resolve `$ref`, fold a nullable `anyOf [X, null]` (or `type: [X, "null"]`)
 * into X with `nullable: true`. Keeps a real union (several non-null variants) as `variants`.
 */
function normalise(prop, root) {
  let p = deref(prop, root);
  let nullable = false;
  if (Array.isArray(p.type)) {
    nullable = p.type.includes("null");
    const rest = p.type.filter((x) => x !== "null");
    p = { ...p, type: rest.length === 1 ? rest[0] : rest[0] || "string" };
  }
  const union = p.oneOf || p.anyOf;
  if (Array.isArray(union)) {
    const options = union.map((x) => deref(x, root));
    const nonNull = options.filter((x) => !isNull(x));
    if (nonNull.length < options.length) nullable = true;
    const { oneOf: _o, anyOf: _a, ...own } = p;
    if (nonNull.length === 1) {
      const inner = normalise(nonNull[0], root);
      // The outer node's title / description / default describe the field; the inner one its type.
      return { ...inner, ...own, nullable: nullable || inner.nullable };
    }
    return { ...own, variants: nonNull, nullable };
  }
  return { ...p, nullable };
}

function kindOf(p) {
  if (p.const !== undefined) return "const";
  if (p.variants) {
    if (p.variants.every((v) => v.type === "object" || v.properties)) return "union";
    // e.g. `str | list[str]` ("all-linear" or module names): plain text, JSON when it looks like JSON.
    return p.variants.some((v) => v.type === "string") ? "loose" : "json";
  }
  if (Array.isArray(p.enum)) return "enum";
  if (p.type === "array" && p.items && Array.isArray(p.items.enum)) return "multi";
  if (p.type === "object" && p.properties && !p.nullable) return "object";
  if (p.type === "boolean") return "boolean";
  if (p.type === "integer" || p.type === "number") return p.type;
  // A list of strings marked `"ui": "lines"` (sample prompts): one item a line, no JSON to type.
  if (p.type === "array" && p.ui === "lines") return "lines";
  if (p.type === "array" || p.type === "object") return "json";
  return "string";
}

/** The property every variant pins with a `const` (pydantic's discriminator), or null. */
function discriminatorOf(p) {
  if (p.discriminator && p.discriminator.propertyName) return p.discriminator.propertyName;
  const first = p.variants[0] && p.variants[0].properties;
  if (!first) return null;
  for (const key of Object.keys(first)) {
    if (p.variants.every((v) => v.properties && v.properties[key] && (v.properties[key].const !== undefined || (Array.isArray(v.properties[key].enum) && v.properties[key].enum.length === 1)))) return key;
  }
  return null;
}

function constOf(variant, key, root) {
  const prop = deref(variant.properties[key], root);
  return prop.const !== undefined ? prop.const : prop.enum[0];
}

const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * One field: {row (or null for a hidden one), read(): value | undefined, reset(v), initial}.
 * ctx: {root (the whole schema), idPrefix, modelList (datalist id), depth}
 */
function buildField(name, rawProp, initialValue, isRequired, ctx) {
  const p = normalise(rawProp, ctx.root);
  const kind = kindOf(p);
  const initial = initialValue !== undefined ? initialValue : p.default;
  const id = newId(ctx.idPrefix || "param");
  const testid = ctx.idPrefix ? `${ctx.idPrefix}-${name}` : undefined;
  const label = () => biTitle("label", { for: id }, name, p, isRequired ? " *" : "");
  const hint = biHint(p);
  const field = { initial, row: null };

  if (kind === "const") {
    // Fixed by the schema (a variant's "type"): not a choice, still sent.
    field.row = h("input", { type: "hidden", id, testid, value: String(p.const) });
    field.read = () => p.const;
    field.reset = () => {};
    field.hidden = true;
    return field;
  }

  if (kind === "union" && ctx.depth < MAX_DEPTH) {
    const key = discriminatorOf(p);
    if (key) return buildUnion(name, p, key, initial, isRequired, ctx, { id, testid, label, hint, field });
  }

  if (kind === "object" && ctx.depth < MAX_DEPTH) {
    const sub = buildObject(p, initial || {}, { ...ctx, idPrefix: testid, depth: ctx.depth + 1 });
    const legend = biTitle("legend", {}, name, p);
    field.row = h("fieldset", { class: "field full subform", testid }, legend, hint, sub.root);
    field.read = () => sub.values();
    field.reset = (v) => sub.reset(v || {});
    return field;
  }

  if (kind === "multi") {
    // An array of enum values: one checkbox each; nothing ticked means "the plugin's default".
    const choices = p.items.enum;
    const start = Array.isArray(initial) ? initial : [];
    const boxes = choices.map((value) => {
      const boxId = newId("opt");
      const box = h("input", { type: "checkbox", id: boxId, testid: testid ? `${testid}-${value}` : undefined, checked: start.some((x) => same(x, value)) });
      const itemLabels = { enum_labels_ja: p.enum_labels_ja || p.items.enum_labels_ja, enum_labels_en: p.enum_labels_en || p.items.enum_labels_en };
      return { value, box, row: h("span", { class: "choice" }, box, bi("label", { for: boxId }, enumLabel(itemLabels, value, "ja"), enumLabel(itemLabels, value, "en"))) };
    });
    const legend = biTitle("legend", {}, name, p);
    const none = p.default === undefined ? h("small", { class: "hint", i18n: "common.none_means_default" }) : null;
    field.row = h("fieldset", { class: "field multi full", testid }, legend, h("div", { class: "choices" }, boxes.map((b) => b.row)), hint, none);
    field.read = () => {
      const picked = boxes.filter((b) => b.box.checked).map((b) => b.value);
      return picked.length ? picked : undefined;
    };
    field.reset = (v) => boxes.forEach((b) => (b.box.checked = Array.isArray(v) && v.some((x) => same(x, b.value))));
    return field;
  }

  let control;
  let read;
  let reset;
  if (kind === "enum") {
    const values = p.nullable && !p.enum.includes(null) ? [null, ...p.enum] : p.enum;
    control = h("select", { id, testid }, values.map((v, i) => (v === null ? h("option", { value: String(i), text: "—" }) : bi("option", { value: String(i), "data-value": String(v) }, enumLabel(p, v, "ja"), enumLabel(p, v, "en")))));
    reset = (v) => {
      const i = values.findIndex((x) => same(x, v));
      control.value = String(i >= 0 ? i : 0);
    };
    read = () => values[Number(control.value)];
  } else if (kind === "string" && p.ui_choices && ctx.choices && ctx.choices[p.ui_choices]) {
    // A choice of what is installed (`"ui_choices": "models"`): a select mirroring the given <datalist>,
    // refilled when it changes; a value that is not (or no longer) installed stays shown as itself.
    const source = ctx.choices[p.ui_choices];
    control = h("select", { id, testid, "data-choices": p.ui_choices });
    let wanted = "";
    const fill = () => {
      const keep = control.value || wanted;
      const opts = [...source.querySelectorAll("option")].map((o) => [o.value, o.textContent || o.value]);
      if (keep && !opts.some(([v]) => v === keep)) opts.push([keep, keep]);
      control.replaceChildren(h("option", { value: "", i18n: "common.choose_model" }), ...opts.map(([v, text]) => h("option", { value: v, text })));
      control.value = keep;
    };
    new MutationObserver(fill).observe(source, { childList: true, subtree: true });
    fill();
    reset = (v) => {
      wanted = v === undefined || v === null ? "" : String(v);
      control.value = "";
      fill();
      control.value = wanted;
    };
    read = () => (control.value === "" ? (p.nullable ? null : undefined) : control.value);
  } else if (kind === "boolean") {
    control = h("input", { type: "checkbox", id, testid });
    reset = (v) => (control.checked = Boolean(v));
    read = () => control.checked;
  } else {
    const numeric = kind === "integer" || kind === "number";
    if (numeric) {
      control = h("input", { type: "number", id, testid, step: kind === "integer" ? "1" : "any", min: p.minimum ?? p.exclusiveMinimum, max: p.maximum ?? p.exclusiveMaximum });
    } else if (kind === "json") {
      control = h("textarea", { id, testid, rows: 2, class: "mono", spellcheck: "false" });
    } else if (kind === "lines") {
      control = h("textarea", { id, testid, rows: 4, class: "lines", spellcheck: "false" });
    } else {
      control = h("input", { type: /(^|_)(key|token|secret|password)$/i.test(name) ? "password" : "text", id, testid, autocomplete: "off" });
      // A workspace model reference ("models/<modality>/<name>"): suggest the modality's models.
      if (ctx.modelList && /models\//.test(`${p.description || ""} ${p.description_ja || ""} ${p.description_en || ""}`)) control.setAttribute("list", ctx.modelList);
    }
    reset = (v) => {
      if (v === undefined || v === null) control.value = "";
      else if (kind === "lines") control.value = (Array.isArray(v) ? v : [v]).join("\n");
      else control.value = kind === "json" || (kind === "loose" && typeof v !== "string") ? JSON.stringify(v) : String(v);
    };
    read = () => {
      const raw = control.value.trim();
      // Empty: null where the schema allows it, else left out (the plugin's default applies).
      if (raw === "") return p.nullable ? null : undefined;
      if (kind === "lines") return raw.split("\n").map((line) => line.trim()).filter(Boolean);
      if (kind === "integer") return parseInt(raw, 10);
      if (kind === "number") return Number(raw);
      if (kind === "json" || (kind === "loose" && /^[[{]/.test(raw))) {
        try {
          return JSON.parse(raw);
        } catch {
          return raw; // sent as is: the server's validation names the field
        }
      }
      return raw;
    };
  }
  reset(initial);
  if (isRequired && kind !== "boolean") control.required = true;
  field.read = read;
  field.reset = reset;
  field.row = h("div", { class: kind === "boolean" ? "field check" : kind === "json" ? "field wide" : "field" }, kind === "boolean" ? [control, label()] : [label(), control], hint);
  return field;
}

/** A discriminated union: a select on the discriminator, the chosen variant's sub-form below it. */
function buildUnion(name, p, key, initial, isRequired, ctx, parts) {
  const { id, testid, hint, field } = parts;
  // The select is labelled by the discriminator itself ("Type"); the legend already names the field.
  const keyProp = deref((p.variants[0].properties || {})[key] || {}, ctx.root);
  const label = () => biTitle("label", { for: id }, key, keyProp);
  const choices = p.variants.map((v) => ({ value: constOf(v, key, ctx.root), variant: v }));
  const select = h("select", { id, testid }, choices.map((c, i) => bi("option", { value: String(i), "data-value": String(c.value) }, labelOfVariant(c, "ja"), labelOfVariant(c, "en"))));
  const body = h("div", { class: "subform-body" });
  const built = new Map(); // variant index -> sub-form, kept while hidden so typed values survive a switch
  const subPrefix = testid || ctx.idPrefix;
  const formFor = (i, values) => {
    if (!built.has(i)) built.set(i, buildObject(choices[i].variant, values || {}, { ...ctx, idPrefix: subPrefix, depth: ctx.depth + 1 }));
    return built.get(i);
  };
  const show = (i, values) => {
    select.value = String(i);
    if (values) {
      if (built.has(i)) built.get(i).reset(values);
      else formFor(i, values);
    }
    // Only the chosen variant is in the page: no duplicate ids or testids from the others.
    body.replaceChildren(formFor(i).root);
  };
  const indexOf = (v) => {
    const i = v && typeof v === "object" ? choices.findIndex((c) => same(c.value, v[key])) : -1;
    return i >= 0 ? i : 0;
  };
  show(indexOf(initial), initial && typeof initial === "object" ? initial : undefined);
  select.addEventListener("change", () => show(Number(select.value)));
  if (isRequired) select.required = true;
  field.row = h("fieldset", { class: "field full subform", testid: testid ? `${testid}-group` : undefined }, biTitle("legend", {}, name, p), h("div", { class: "field" }, label(), select), hint, body);
  field.read = () => ({ [key]: choices[Number(select.value)].value, ...formFor(Number(select.value)).values() });
  field.reset = (v) => show(indexOf(v), v && typeof v === "object" ? v : undefined);
  return field;
}

function labelOfVariant(choice, lang = getLang()) {
  const v = choice.variant;
  const titled = lang === "ja" ? v.title_ja || v.label_ja : v.title_en || v.label_en;
  return titled || String(choice.value);
}

function buildObject(schema, values, ctx) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const root = h("div", { class: "schema-form" });
  const fields = {};
  for (const [name, prop] of Object.entries(props)) {
    const f = buildField(name, prop, values && name in values ? values[name] : undefined, required.has(name), ctx);
    fields[name] = f;
    root.append(f.row);
  }
  return {
    root,
    fields,
    values() {
      const out = {};
      for (const [name, f] of Object.entries(fields)) {
        const v = f.read();
        if (v !== undefined) out[name] = v;
      }
      return out;
    },
    reset(next) {
      for (const [name, v] of Object.entries(next || {})) {
        const f = fields[name];
        if (!f) continue;
        f.reset(v);
        f.initial = v;
      }
    },
  };
}

/**
 * @param {object} schema  a JSON schema of an object ({properties, required, $defs})
 * @param {object} opts    idPrefix (testids: `<idPrefix>-<name>`, nested: `<idPrefix>-<name>-<sub>`),
 *                         values (initial), onChange(), modelList (id of a <datalist> of model refs),
 *                         choices ({models: <datalist>}: fields with "ui_choices" become a select of its options)
 * @returns {{root: HTMLElement, empty: boolean, values: () => object, changed: () => object, reset: (v) => void}}
 */
export function schemaForm(schema, opts = {}) {
  const form = buildObject(schema || {}, opts.values || {}, { root: schema || {}, idPrefix: opts.idPrefix, modelList: opts.modelList, choices: opts.choices, depth: 0 });
  if (opts.onChange) form.root.addEventListener("change", opts.onChange);
  return {
    root: form.root,
    empty: Object.values(form.fields).every((f) => f.hidden),
    values: () => form.values(),
    /** Only the values the user moved away from their default (or from the last reset). */
    changed() {
      const out = {};
      for (const [name, f] of Object.entries(form.fields)) {
        const v = f.read();
        if (v !== undefined && !same(v, f.initial)) out[name] = v;
      }
      return out;
    },
    /** Show new starting values (a preset's): they become the baseline changed() compares with. */
    reset: (values) => form.reset(values),
  };
}
