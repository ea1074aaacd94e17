// The image modality's own tabs, used instead of the shell's generic ones for the same tab ids:
// a gallery for datasets, live sample images in training, a generation form for inference.
import * as datasets from "./datasets.js";
import * as generate from "./generate.js";
import * as train from "./train.js";

export const IMAGE_TABS = { datasets, train, infer: generate };
