// The generic generation view for any inference kind a plugin declares (image, speech, transcribe,
// or a third party's): base / adapter choice, a form generated from the plugin's infer_schemas
// (input and parameters, with presets), file inputs uploaded first (POST /api/infer/uploads), then
// POST /api/infer/generate, streamed where the kind streams (speech plays as it arrives), compare
// base vs adapter with one seed. Results go to a media gallery with their settings.
import { ApiError, post, postSSE } from "../api.js";
import { field, h, select, setBilingual, withBusy } from "../dom.js";
import { refreshModelAndAdapter } from "../lists.js";
import { schemaForm } from "../schema_form.js";
import { createMediaGallery } from "../widgets/gallery.js";
import { createStreamPlayer } from "../widgets/audio_stream.js";

/** Properties the user gives as a file: `{"format": "upload"}` (optionally `"accept": "image/*"`). */
function splitUploads(schema) {
  const props = { ...((schema && schema.properties) || {}) };
  const uploads = {};
  for (const [name, prop] of Object.entries(props)) {
    if (prop && (prop.format === "upload" || prop["x-upload"])) {
      uploads[name] = prop;
      delete props[name];
    }
  }
  return { schema: { ...(schema || {}), properties: props, required: ((schema && schema.required) || []).filter((r) => !uploads[r]) }, uploads };
}

/**
 * @param {HTMLElement} container
 * @param {object} app the UI shell
 * @param {string} kind an inference kind of the modality ("image", "speech", ...)
 */
export function mountGenerateView(container, app, kind) {
  const m = app.modality;
  const spec = ((app.info().infer_schemas || {})[kind]) || {};
  const tid = (name) => `gen-${kind}-${name}`;
  const baseSel = select([], { testid: tid("base") });
  const adapterSel = select([], { testid: tid("adapter") });
  const adapterWeight = h("input", { type: "number", min: -2, max: 2, step: "0.05", value: 1, testid: tid("adapter-weight") });
  const presets = spec.presets || {};
  const presetSel = select([{ value: "", i18n: "gen.no_preset" }, ...Object.keys(presets).map((p) => ({ value: p, label: p }))], { testid: tid("preset") });
  const { schema: inputSchema, uploads } = splitUploads(spec.input_schema || { type: "object", properties: { prompt: { type: "string", title: "Prompt", title_ja: "プロンプト" } } });
  const inputForm = schemaForm(inputSchema, { idPrefix: tid("input") });
  const paramsForm = schemaForm(spec.params_schema || { type: "object", properties: {} }, { idPrefix: tid("param") });
  const fileInputs = Object.entries(uploads).map(([name, prop]) => {
    const input = h("input", { type: "file", accept: prop.accept || (prop["x-upload"] === "audio" ? "audio/*" : prop["x-upload"] === "image" ? "image/*" : ""), testid: tid(`file-${name}`) });
    const label = h("label", {});
    setBilingual(label, prop.title_ja || prop.title || name, prop.title || name);
    return { name, input, node: h("div", { class: "field" }, label, input) };
  });
  const compare = h("input", { type: "checkbox", testid: tid("compare") });
  const streamBox = h("input", { type: "checkbox", testid: tid("stream"), checked: kind === "speech" });
  const run = h("button", { type: "submit", class: "primary", i18n: "gen.run", testid: tid("run") });
  const textOut = h("pre", { class: "gen-text", testid: tid("text"), hidden: true });
  const player = createStreamPlayer({ testid: tid("player") });
  const gallery = createMediaGallery({ testid: tid("gallery"), emptyKey: "gen.empty" });
  const compareBox = h("div", { class: "compare", testid: tid("compare-result"), hidden: true });

  const form = h(
    "form",
    { class: "card form-grid", testid: tid("form") },
    field("infer.base_model", baseSel),
    field("infer.adapter", adapterSel),
    field("gen.adapter_weight", adapterWeight),
    Object.keys(presets).length ? field("gen.preset", presetSel) : null,
    h("div", { class: "full" }, inputForm.root),
    ...fileInputs.map((f) => f.node),
    paramsForm.empty ? null : h("details", { class: "full" }, h("summary", { i18n: "gen.params" }), paramsForm.root),
    h("div", { class: "field check" }, compare, h("label", { i18n: "infer.compare" })),
    h("div", { class: "field check" }, streamBox, h("label", { i18n: "gen.stream" })),
    h("div", { class: "row full" }, run),
  );
  container.append(form, h("div", { class: "card" }, player.root, textOut, compareBox, gallery.root));

  presetSel.addEventListener("change", () => presetSel.value && paramsForm.reset({ ...paramsForm.values(), ...presets[presetSel.value] }));

  async function uploadFiles() {
    const input = {};
    for (const f of fileInputs) {
      const file = f.input.files && f.input.files[0];
      if (!file) continue;
      const form = new FormData();
      form.append("file", file);
      input[f.name] = (await post("/api/infer/uploads", form)).value;
    }
    return input;
  }

  function showDone(done, label) {
    for (const item of done.media || []) gallery.add({ ...item, label });
    if (done.text) {
      textOut.hidden = false;
      textOut.textContent = done.text;
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withBusy(run, async () => {
      const adapter = adapterSel.value || null;
      const body = {
        modality: m,
        task: kind,
        base_model: baseSel.value,
        adapters: adapter ? [{ name: adapter, weight: Number(adapterWeight.value) || 1 }] : [],
        input: { ...inputForm.values(), ...(await uploadFiles()) },
        params: paramsForm.values(),
      };
      compareBox.hidden = true;
      if (compare.checked) {
        const both = await post("/api/infer/generate", { ...body, compare: true });
        compareBox.hidden = false;
        const side = (label, done) => {
          const g = createMediaGallery({ testid: tid(`compare-${label}`) });
          for (const item of done.media || []) g.add({ ...item, label: `${label} (seed ${both.seed})` });
          return h("div", {}, h("h4", { i18n: `infer.${label}_answer` }), done.text ? h("pre", { text: done.text }) : null, g.root);
        };
        compareBox.replaceChildren(side("base", both.base), side("adapter", both.adapter));
        return;
      }
      if (!streamBox.checked) {
        showDone(await post("/api/infer/generate", body), adapter || "base");
        return;
      }
      player.start();
      let text = "";
      await postSSE("/api/infer/generate", { ...body, stream: true }, (event, data) => {
        if (event === "audio" && data && data.chunk) player.push(data);
        else if (event === "audio" && data && data.url) {
          player.finish(data);
          gallery.add({ ...data, kind: "audio", label: adapter || "base" });
        } else if (event === "image" && data && data.url) gallery.add({ ...data, kind: "image", label: adapter || "base" });
        else if (event === "token") {
          text += (data && data.text) || "";
          textOut.hidden = false;
          textOut.textContent = text;
        } else if (event === "done" && data && data.text) {
          textOut.hidden = false;
          textOut.textContent = data.text;
        } else if (event === "error") throw new ApiError(500, { error: data });
      });
    });
  });

  const refresh = () => refreshModelAndAdapter(m, baseSel, adapterSel);
  return { onShow: refresh };
}
