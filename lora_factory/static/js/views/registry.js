// Which view the 推論 tab shows for an inference kind. A modality plugin's own front-end can
// register a richer view for its kind, for its modality only (the built-in image view does: its form
// knows the image plugin's parameters); any other (modality, kind) gets the generic generation view
// built from the plugin's infer_schemas.
import { mountGenerateView } from "./generate.js";

const VIEWS = new Map();

/**
 * mount(container, app, kind) -> {onShow?}. With `modality`, the view serves that modality's kind
 * only; without, every modality's (for a view that needs nothing but the infer_schemas).
 */
export function registerView(kind, mount, modality = null) {
  VIEWS.set(`${modality || "*"}:${kind}`, mount);
}

export function viewFor(kind, modality = null) {
  return VIEWS.get(`${modality}:${kind}`) || VIEWS.get(`*:${kind}`) || mountGenerateView;
}
