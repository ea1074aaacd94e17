// A form generated from a plugin's JSON schema (refine operation params, train params), so a
// third-party plugin gets a usable UI without shipping any front-end code.
import { getLang } from "./i18n.js";
import { h, newId } from "./dom.js";

function titleOf(name, prop) {
  if (getLang() === "ja") return prop.title_ja || prop.label_ja || prop.title || name;
  return prop.title_en || prop.label_en || prop.title || name;
}

function describe(prop) {
  if (getLang() === "ja") return prop.description_ja || prop.description || "";
  return prop.description_en || prop.description || "";
}

function typeOf(prop) {
  let type = prop.type;
  if (Array.isArray(type)) type = type.find((x) => x !== "null") || type[0];
  if (!type && prop.anyOf) {
    const first = prop.anyOf.find((x) => x.type && x.type !== "null");
    type = first ? first.type : "string";
  }
  return type || "string";
}

/**
 * @param {object} schema  {properties: {name: {type, default, enum, minimum, maximum, title, description}}, required}
 * @param {object} opts    idPrefix (testids: `<idPrefix>-<name>`), values (initial), onChange()
 * @returns {{root: HTMLElement, values: () => object, changed: () => object}}
 */
export function schemaForm(schema, opts = {}) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const root = h("div", { class: "schema-form" });
  const controls = {};
  for (const [name, prop] of Object.entries(props)) {
    const type = typeOf(prop);
    const id = newId(opts.idPrefix || "param");
    const initial = opts.values && name in opts.values ? opts.values[name] : prop.default;
    const testid = opts.idPrefix ? `${opts.idPrefix}-${name}` : undefined;
    let control;
    if (Array.isArray(prop.enum)) {
      control = h("select", { id, testid }, prop.enum.map((v) => h("option", { value: String(v), text: String(v) })));
      if (initial !== undefined && initial !== null) control.value = String(initial);
    } else if (type === "boolean") {
      control = h("input", { type: "checkbox", id, testid, checked: Boolean(initial) });
    } else if (type === "integer" || type === "number") {
      control = h("input", {
        type: "number",
        id,
        testid,
        step: type === "integer" ? "1" : "any",
        min: prop.minimum ?? prop.exclusiveMinimum,
        max: prop.maximum ?? prop.exclusiveMaximum,
        value: initial ?? "",
      });
    } else if (type === "array" || type === "object") {
      control = h("textarea", { id, testid, rows: 2, class: "mono", value: initial === undefined ? "" : JSON.stringify(initial) });
    } else {
      control = h("input", { type: "text", id, testid, value: initial ?? "" });
    }
    control.dataset.type = type;
    control.dataset.initial = JSON.stringify(initial ?? null);
    if (required.has(name)) control.required = true;
    if (opts.onChange) control.addEventListener("change", opts.onChange);
    controls[name] = control;
    const desc = describe(prop);
    const label = h("label", { for: id, text: titleOf(name, prop) });
    const row = h(
      "div",
      { class: type === "boolean" ? "field check" : "field" },
      type === "boolean" ? [control, label] : [label, control],
      desc ? h("small", { class: "hint", text: desc }) : null,
    );
    root.append(row);
  }

  function read(control) {
    const type = control.dataset.type;
    if (control.type === "checkbox") return control.checked;
    const raw = control.value;
    if (raw === "") return undefined;
    if (type === "integer") return parseInt(raw, 10);
    if (type === "number") return Number(raw);
    if (type === "array" || type === "object") {
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
    }
    if (control.tagName === "SELECT" && control.dataset.initial) {
      const init = JSON.parse(control.dataset.initial);
      if (typeof init === "number") return Number(raw);
      if (typeof init === "boolean") return raw === "true";
    }
    return raw;
  }

  return {
    root,
    empty: Object.keys(props).length === 0,
    values() {
      const out = {};
      for (const [name, control] of Object.entries(controls)) {
        const v = read(control);
        if (v !== undefined) out[name] = v;
      }
      return out;
    },
    /** Only the values the user moved away from their default. */
    changed() {
      const out = {};
      for (const [name, control] of Object.entries(controls)) {
        const v = read(control);
        if (v !== undefined && JSON.stringify(v) !== control.dataset.initial) out[name] = v;
      }
      return out;
    },
    /** Show new starting values (a preset's): they become the baseline changed() compares with. */
    reset(values) {
      for (const [name, v] of Object.entries(values || {})) {
        const c = controls[name];
        if (!c) continue;
        if (c.type === "checkbox") c.checked = Boolean(v);
        else c.value = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
        c.dataset.initial = JSON.stringify(v ?? null);
      }
    },
  };
}
