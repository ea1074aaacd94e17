// Tabs a plugin brings (register_ui): its ES module calls registerTab on import, before the shell
// builds the tab bar. A new id is a tab of its own, added before 設定 / System and shown only while
// the plugin's modality is chosen; a host tab's id with a modality replaces that tab for the modality
// only (the image plugin's datasets tab). Same mount contract as the host's tabs.
const TABS = [];

/**
 * module: {mount(panel, app) -> {onShow?, destroy?, onLang?}} like the host's tabs.
 * options: {modality, label_ja, label_en}; without modality a new tab is shown for every modality.
 */
export function registerTab(id, module, options = {}) {
  const modality = options.modality || null;
  if (!/^[a-z][a-z0-9_-]*$/.test(id) || TABS.some((t) => t.id === id && t.modality === modality)) {
    throw new Error(`tab id taken or invalid: ${id}`);
  }
  TABS.push({ id, module, modality, label_ja: options.label_ja || id, label_en: options.label_en || id });
}

export function pluginTabs() {
  return TABS.slice();
}
