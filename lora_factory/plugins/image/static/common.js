// Shared pieces of the image tabs: bilingual labels, the image stylesheet, PNG settings read in the
// browser (our JSON chunk, or A1111's "parameters" text), uploads of input images, model lists by kind.
import { get, post } from "/static/js/api.js";
import { h, newId, setBilingual } from "/static/js/dom.js";

let styled = false;
/** The image tabs' stylesheet, added once (the shell's index.html stays modality-neutral). */
export function ensureStyles() {
  if (styled) return;
  styled = true;
  document.head.append(h("link", { rel: "stylesheet", href: new URL("./image.css", import.meta.url).href }));
}

/** A text node in both languages that follows the language switch. */
export function bi(ja, en, tag = "span", attrs = {}) {
  return setBilingual(h(tag, attrs), ja, en);
}

/** A labelled field with bilingual label text (the shell's field() takes i18n keys). */
export function biField(ja, en, control, hintJa, hintEn) {
  if (!control.id) control.id = newId("img");
  return h(
    "div",
    { class: "field" },
    setBilingual(h("label", { for: control.id }), ja, en),
    control,
    hintJa ? setBilingual(h("small", { class: "hint" }), hintJa, hintEn || hintJa) : null,
  );
}

export function biButton(ja, en, attrs = {}) {
  return setBilingual(h("button", { type: "button", ...attrs }), ja, en);
}

export async function listModelsOfKind(modality, kind) {
  const query = `modality=${encodeURIComponent(modality)}${kind ? `&kind=${encodeURIComponent(kind)}` : ""}`;
  try {
    return (await get(`/api/models?${query}`)).models || [];
  } catch {
    return [];
  }
}

/** Upload one input file (init image, mask, ControlNet / reference image): "upload:<id>". */
export async function uploadInput(file) {
  const form = new FormData();
  form.append("file", file);
  return (await post("/api/infer/uploads", form)).value;
}

function latin1(bytes) {
  let out = "";
  for (const b of bytes) out += String.fromCharCode(b);
  return out;
}

/** tEXt / iTXt (uncompressed) chunks of a PNG as {keyword: text}. */
export function pngTextChunks(buffer) {
  const data = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (data.length < 8 || signature.some((b, i) => data[i] !== b)) return null;
  const out = {};
  let pos = 8;
  const utf8 = new TextDecoder("utf-8");
  while (pos + 8 <= data.length) {
    const length = view.getUint32(pos);
    const type = latin1(data.subarray(pos + 4, pos + 8));
    const body = data.subarray(pos + 8, pos + 8 + length);
    if (type === "tEXt") {
      const zero = body.indexOf(0);
      if (zero > 0) out[latin1(body.subarray(0, zero))] = utf8.decode(body.subarray(zero + 1));
    } else if (type === "iTXt") {
      const zero = body.indexOf(0);
      const compressed = body[zero + 1];
      let p = zero + 3;
      p = body.indexOf(0, p) + 1; // language tag
      p = body.indexOf(0, p) + 1; // translated keyword
      if (zero > 0 && !compressed) out[latin1(body.subarray(0, zero))] = utf8.decode(body.subarray(p));
    } else if (type === "IEND") {
      break;
    }
    pos += 12 + length;
  }
  return out;
}

const SAMPLERS = {
  "euler a": "euler_a", euler: "euler", "dpm++ 2m": "dpmpp_2m", "dpm++ 2m karras": "dpmpp_2m_karras", ddim: "ddim",
  plms: "pndm", lms: "lms", heun: "heun", unipc: "unipc", lcm: "lcm",
};

/** Settings from A1111's "parameters" text (what PNG Info shows). */
export function parseA1111(text) {
  const lines = String(text || "").trim().split("\n");
  const last = lines[lines.length - 1] || "";
  const hasFields = /(^|, )Steps: /.test(last);
  const body = hasFields ? lines.slice(0, -1) : lines;
  const prompt = [];
  const negative = [];
  let inNegative = false;
  for (let line of body) {
    if (line.startsWith("Negative prompt:")) {
      inNegative = true;
      line = line.slice("Negative prompt:".length).trim();
    }
    (inNegative ? negative : prompt).push(line);
  }
  const settings = {};
  let promptText = prompt.join("\n").trim();
  const adapters = [];
  promptText = promptText.replace(/<lora:([^:>]+):([-+]?[0-9]*\.?[0-9]+)>/g, (_, name, weight) => {
    adapters.push({ name, weight: Number(weight) });
    return "";
  });
  // no ", ," gaps where a tag stood in a comma list
  settings.prompt = promptText.replace(/,[ \t]*(?=,)/g, "").replace(/[ \t]{2,}/g, " ").split("\n")
    .map((line) => line.trim().replace(/^,+|,+$/g, "").trim()).join("\n").trim();
  if (adapters.length) settings.adapters = adapters;
  if (negative.length) settings.negative_prompt = negative.join("\n").trim();
  if (hasFields) {
    const re = /\s*([\w \-/+]+): ("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)/g;
    let m;
    let schedule = "";
    while ((m = re.exec(last)) !== null) {
      if (!m[0]) break;
      const key = m[1].trim();
      let value = m[2];
      if (value.startsWith('"')) {
        try {
          value = JSON.parse(value);
        } catch {
          value = value.slice(1, -1);
        }
      }
      value = String(value).trim();
      if (key === "Steps") settings.steps = Number(value);
      else if (key === "Schedule type") schedule = value.toLowerCase();
      else if (key === "Sampler") settings.scheduler = SAMPLERS[value.toLowerCase()] || value;
      else if (key === "CFG scale") settings.guidance_scale = Number(value);
      else if (key === "Seed") settings.seed = Number(value);
      else if (key === "Size" && value.includes("x")) {
        const [w, hgt] = value.split("x");
        settings.width = Number(w);
        settings.height = Number(hgt);
      } else if (key === "Model") settings.base_model_name = value;
      else if (key === "Denoising strength") settings.strength = Number(value);
      else if (key === "Clip skip") settings.clip_skip = Number(value);
      else if (key === "Model hash") settings.model_hash = value;
      else if (key === "Lora hashes") {
        settings.lora_hashes = Object.fromEntries(value.split(",").filter((p) => p.includes(":"))
          .map((p) => [p.slice(0, p.lastIndexOf(":")).trim(), p.slice(p.lastIndexOf(":") + 1).trim()]));
      }
    }
    if (schedule === "karras" && Object.values(SAMPLERS).includes(`${settings.scheduler}_karras`)) settings.scheduler = `${settings.scheduler}_karras`;
  }
  return settings;
}

/** {source: "lora_factory" | "a1111" | null, settings} from a dropped PNG file. */
export async function settingsFromPng(file) {
  const chunks = pngTextChunks(await file.arrayBuffer());
  if (!chunks) return { source: null, settings: {} };
  if (chunks.lora_factory) {
    try {
      return { source: "lora_factory", settings: JSON.parse(chunks.lora_factory) };
    } catch {
      // fall through to the A1111 text
    }
  }
  if (chunks.parameters) return { source: "a1111", settings: parseA1111(chunks.parameters) };
  return { source: null, settings: {} };
}

/** A short, readable line of the settings an image was made with. */
export function settingsLine(meta) {
  const parts = [];
  if (meta.seed !== undefined) parts.push(`seed ${meta.seed}`);
  if (meta.steps) parts.push(`${meta.steps} steps`);
  if (meta.guidance_scale !== undefined) parts.push(`CFG ${meta.guidance_scale}`);
  if (meta.width) parts.push(`${meta.width}x${meta.height}`);
  if (meta.scheduler) parts.push(meta.scheduler);
  for (const a of meta.adapters || []) parts.push(`<lora:${a.name}:${a.weight}>`);
  if (meta.lora_weight !== undefined && meta.lora_weight !== null) parts.push(`weight ${meta.lora_weight}`);
  return parts.join(" · ");
}
