// Which view the 推論 tab shows for an inference kind. A modality plugin's own front-end can
// register a richer view for its kind here (the built-in image and audio views do); any other
// kind gets the generic generation view built from the plugin's infer_schemas.
import { mountGenerateView } from "./generate.js";

const VIEWS = new Map();

/** mount(container, app, kind) -> {onShow?}; registered by a view module for its kind(s). */
export function registerView(kind, mount) {
  VIEWS.set(kind, mount);
}

export function viewFor(kind) {
  return VIEWS.get(kind) || mountGenerateView;
}
