// Tabs a plugin brings (register_ui): its ES module calls registerTab on import; the shell adds the
// tab to the bar before 設定 / System and shows it only while the plugin's modality is chosen.
const TABS = [];

/**
 * module: {mount(panel, app) -> {onShow?, destroy?, onLang?}} like the host's tabs.
 * options: {modality, label_ja, label_en}; without modality the tab is shown for every modality.
 */
export function registerTab(id, module, options = {}) {
  if (!/^[a-z][a-z0-9_-]*$/.test(id) || TABS.some((t) => t.id === id)) throw new Error(`tab id taken or invalid: ${id}`);
  TABS.push({ id, module, modality: options.modality || null, label_ja: options.label_ja || id, label_en: options.label_en || id });
}

export function pluginTabs() {
  return TABS.slice();
}
