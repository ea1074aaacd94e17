// Every view module that registers itself for an inference kind is imported here once; the 推論
// tab asks viewFor(kind). A kind without a registered view gets the generic generation view.
export { registerView, viewFor } from "./registry.js";
