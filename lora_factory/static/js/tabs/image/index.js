// The image modality's front-end: its datasets tab (the shell's, plus image statistics and a tag
// filter), and its view of the 推論 tab, registered for the inference kind "image" on import.
import * as datasets from "./datasets.js";
import "./generate.js";

export const IMAGE_TABS = { datasets };
