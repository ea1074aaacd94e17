// 推論: one view per inference kind the modality declares (chat, image, speech, transcribe ...),
// switched with a segmented control when there are several. Chat is the streamed chat; other kinds
// get their registered view or the generic generation view (views/registry.js).
import { h } from "../dom.js";
import { mountChatView } from "../views/chat.js";
import { viewFor } from "../views/index.js";

export function inferenceKinds(info) {
  if (Array.isArray(info.inference_kinds) && info.inference_kinds.length) return info.inference_kinds;
  return Array.isArray(info.supports) && !info.supports.includes("chat") ? [] : ["chat"];
}

export function mount(panel, app) {
  const kinds = inferenceKinds(app.info());
  const switcher = h("div", { class: "segmented", role: "tablist", testid: "infer-kinds", hidden: kinds.length < 2 });
  const body = h("div", {});
  panel.append(h("h2", { i18n: "tab.infer" }), switcher, body);
  if (!kinds.length) {
    body.append(h("p", { class: "muted", i18n: "infer.none" }));
    return {};
  }
  const views = {};
  let current = null;

  function show(kind) {
    current = kind;
    for (const btn of switcher.children) btn.setAttribute("aria-selected", String(btn.dataset.kind === kind));
    for (const [k, v] of Object.entries(views)) v.box.hidden = k !== kind;
    if (!views[kind]) {
      const box = h("div", { testid: `infer-view-${kind}` });
      body.append(box);
      const mounted = (kind === "chat" ? mountChatView : viewFor(kind, app.modality))(box, app, kind) || {};
      views[kind] = { box, mounted };
    }
    const mounted = views[kind].mounted;
    return mounted.onShow ? mounted.onShow() : undefined;
  }

  for (const kind of kinds) {
    switcher.append(h("button", { type: "button", role: "tab", class: "seg", "data-kind": kind, testid: `infer-kind-${kind}`, i18n: `infer.kind.${kind}`, onclick: () => show(kind) }));
  }
  return { onShow: () => show(current || kinds[0]) };
}
