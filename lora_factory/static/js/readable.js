// Results in words: a plugin's result object (a refine report, adapter details, dataset statistics,
// eval figures, the machine) as a table with labels in the UI's language and values formatted
// (sizes, dates, yes / no, min · mean · max), the raw JSON kept behind a 「詳細 (JSON)」 toggle.
import { formatBytes, formatDate, formatNumber, h } from "./dom.js";
import { getLang, t } from "./i18n.js";

// key -> [ja, en]. Keys a plugin adds and nobody named here are shown as they are (readably spaced).
const LABELS = {
  name: ["名前", "name"], kind: ["種類", "kind"], modality: ["モダリティ", "modality"], format: ["形式", "format"],
  encoding: ["文字コード", "encoding"], note: ["備考", "note"], rows: ["行数", "rows"], size: ["サイズ", "size"],
  size_bytes: ["サイズ", "size"], files: ["ファイル数", "files"], images: ["画像数", "images"], clips: ["音声クリップ数", "clips"],
  rows_in: ["入力行数", "rows in"], rows_out: ["出力行数", "rows out"], removed: ["削除", "removed"], changed: ["変更", "changed"],
  output: ["出力", "output"], stopped: ["途中で停止", "stopped early"], duration: ["所要時間", "duration"],
  items: ["件数", "items"], evolved: ["進化させた件数", "evolved"], eliminated: ["除外した件数", "eliminated"], methods: ["手法", "methods"],
  created_at: ["作成日時", "created"], updated_at: ["更新日時", "updated"], finished_at: ["終了日時", "finished"], started_at: ["開始日時", "started"],
  partial: ["途中で保存", "saved before the end"], job_id: ["ジョブ ID", "job id"], base_model: ["ベースモデル", "base model"],
  dataset: ["データセット", "dataset"], parent: ["元データ", "parent"], preset: ["プリセット", "preset"], method: ["学習方式", "method"],
  rank: ["ランク (r)", "rank (r)"], alpha: ["alpha", "alpha"], version: ["バージョン", "version"], path: ["場所", "location"],
  data_report: ["データの報告", "data report"], params: ["パラメータ", "parameters"], weights_file: ["重みファイル", "weights file"],
  tokens_per_s: ["処理速度 (トークン/秒)", "tokens / s"], final_loss: ["最終損失", "final loss"], first_loss: ["最初の損失", "first loss"],
  train_loss: ["学習損失", "training loss"], eval_loss: ["評価損失", "eval loss"], steps: ["ステップ数", "steps"],
  max_steps: ["最大ステップ数", "max steps"], epochs: ["エポック数", "epochs"], token_cache: ["トークン化キャッシュ", "token cache"],
  hit: ["再利用", "reused"], miss: ["新規作成", "built"], min: ["最小", "min"], max: ["最大", "max"], mean: ["平均", "mean"],
  median: ["中央値", "median"], p50: ["中央値", "median"], p95: ["95%点", "95th pct"], sum: ["合計", "total"], count: ["件数", "count"],
  chars: ["文字数", "characters"], tokens: ["トークン数", "tokens"], turns: ["ターン数", "turns"], messages: ["メッセージ数", "messages"],
  seconds: ["秒数", "seconds"], languages: ["言語", "languages"], roles: ["役割", "roles"], sample_rate: ["サンプリングレート", "sample rate"],
  cores_logical: ["論理コア数", "logical cores"], cores_physical: ["物理コア数", "physical cores"], cores: ["コア数", "cores"],
  model: ["型番", "model"], percent: ["使用率 (%)", "use (%)"], total_bytes: ["容量", "total"], free_bytes: ["空き", "free"],
  used_bytes: ["使用中", "used"], available_bytes: ["使用可能", "available"], total: ["合計", "total"], free: ["空き", "free"],
  used: ["使用中", "used"], available: ["使用可能", "available"], memory_total: ["メモリ容量", "memory"], memory_free: ["空きメモリ", "free memory"],
  python: ["Python", "Python"], platform: ["OS", "platform"], device: ["デバイス", "device"], precision: ["精度", "precision"],
  images_with_repeats: ["画像数(繰り返し込み)", "images with repeats"], resolution: ["解像度", "resolution"], buckets: ["バケット", "buckets"],
  steps_per_s: ["ステップ/秒", "steps / s"], train_runtime: ["学習時間 (秒)", "training time (s)"], peak_vram_mb: ["最大 VRAM (MB)", "peak VRAM (MB)"],
  train_rows: ["学習に使った行数", "training rows"], eval_rows: ["評価用の行数", "eval rows"],
  trainable_parameters: ["学習するパラメータ数", "trainable parameters"], rows_truncated: ["切り詰めた行数", "rows truncated"],
  tokens_truncated: ["切り詰めたトークン数", "tokens truncated"], rows_dropped: ["除いた行数", "rows dropped"],
  tokens_dropped: ["除いたトークン数", "tokens dropped"], documents_split: ["分割した文書数", "documents split"],
  pack_fill_rate: ["パッキング充填率", "packing fill rate"], total_params: ["全パラメータ数", "all parameters"],
  passed: ["合格", "passed"], failed: ["不合格", "failed"], pass_rate: ["合格率", "pass rate"], seconds_per_case: ["1 件あたりの秒数", "seconds per case"],
  preference_accuracy: ["選好の正解率", "preference accuracy"], preference_margin: ["平均マージン", "mean margin"],
  base_preference_accuracy: ["ベースの選好の正解率", "base preference accuracy"], base_preference_margin: ["ベースの平均マージン", "base mean margin"],
  margin_gain: ["マージンの伸び", "margin gain"], perplexity: ["パープレキシティ", "perplexity"],
};

const STAT_KEYS = new Set(["min", "max", "mean", "median", "p50", "p95", "sum", "count", "std"]);
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** The label of a key in the UI's language. */
export function fieldLabel(key, lang = getLang()) {
  const pair = LABELS[key];
  if (pair) return pair[lang === "ja" ? 0 : 1];
  return String(key).replaceAll("_", " ");
}

/** A value in words: sizes, dates, yes / no, numbers; small objects inline; null -> "-". */
export function readableValue(key, value, lang = getLang()) {
  if (value === null || value === undefined || value === "") return "-";
  if (typeof value === "boolean") return t(value ? "common.yes" : "common.no", null, lang);
  if (typeof value === "number") {
    if (/bytes$/.test(key) || key === "size") return formatBytes(value);
    return formatNumber(value);
  }
  if (typeof value === "string") return ISO_DATE.test(value) ? formatDate(value) : value;
  if (Array.isArray(value)) {
    if (value.every((x) => x === null || typeof x !== "object")) return value.join(", ");
    return t("common.n_items", { n: value.length }, lang);
  }
  // an output written by a job: its name is what people know
  if (value.kind === "file" || value.kind === "folder") return value.name || value.rel_path || value.path || "-";
  const entries = Object.entries(value);
  if (!entries.length) return "-";
  if (entries.every(([, v]) => v === null || typeof v !== "object")) {
    const ordered = entries.every(([k]) => STAT_KEYS.has(k)) ? entries.sort(([a], [b]) => statOrder(a) - statOrder(b)) : entries;
    return ordered.map(([k, v]) => `${LABELS[k] ? fieldLabel(k, lang) : k}: ${readableValue(k, v, lang)}`).join(" · ");
  }
  return t("common.n_items", { n: entries.length }, lang);
}

function statOrder(k) {
  return ["count", "min", "mean", "median", "p50", "p95", "max", "sum", "std"].indexOf(k);
}

/** 「詳細 (JSON)」: the object as the API sent it, closed by default. */
export function jsonToggle(obj, testid) {
  return h("details", { class: "json-toggle", testid }, h("summary", { i18n: "common.details_json" }), h("pre", { class: "log", text: JSON.stringify(obj, null, 2) }));
}

/**
 * The generic key/value table for objects whose shape belongs to a plugin (stats, metrics, reports):
 * labelled rows, formatted values, and (opts.json, default on) a last row with the raw JSON.
 * The labelled key stays on each row as data-key for tools and tests.
 */
export function kvTable(obj, testid, opts = {}) {
  const table = h("table", { class: "kv", testid });
  const body = h("tbody");
  const entries = Object.entries(obj || {});
  for (const [k, v] of entries) {
    // both languages kept on the cells, so the language switch relabels them
    const th = h("th", { scope: "row", bi: { ja: fieldLabel(k, "ja"), en: fieldLabel(k, "en") } });
    const td = h("td", { bi: { ja: readableValue(k, v, "ja"), en: readableValue(k, v, "en") } });
    body.append(h("tr", { "data-key": k }, th, td));
  }
  const nested = entries.some(([, v]) => v !== null && typeof v === "object");
  if ((opts.json ?? nested) && entries.length) {
    body.append(h("tr", { class: "json-row" }, h("td", { colspan: 2 }, jsonToggle(obj, testid ? `${testid}-json` : "kv-json"))));
  }
  table.append(body);
  return table;
}
