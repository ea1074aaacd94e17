// The image plugin's front-end, loaded by the host's UI through the register_ui hook: its datasets
// tab for the image modality (the shell's, plus image statistics and a tag filter) and its view of
// the 推論 tab, registered for the inference kind "image" on import (generate.js).
import { registerTab } from "/static/js/tabs/registry.js";
import * as datasets from "./datasets.js";
import "./generate.js";

registerTab("datasets", datasets, { modality: "image" });
