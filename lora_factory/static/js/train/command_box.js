// 「コマンドを表示」: the `lora-factory train …` and `curl` commands for the form as it stands. The
// server writes them (POST /api/train/command) from the very body the form would POST, so what is
// shown is what would run; each has a copy button.
import { post } from "../api.js";
import { h, setBilingual, setI18n } from "../dom.js";

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // no clipboard permission (or an insecure origin): copy through a selected textarea
    const area = h("textarea", { class: "sr-only", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

/** opts.body(): the request body (throws a readable error when the form cannot make one). */
export function createCommandBox(opts) {
  const button = h("button", { type: "button", i18n: "train.show_command", testid: "train-show-command", "aria-expanded": "false" });
  const cli = h("pre", { class: "command mono", testid: "train-command-cli", tabindex: "0" });
  const curl = h("pre", { class: "command mono", testid: "train-command-curl", tabindex: "0" });
  const status = h("small", { class: "hint", testid: "train-command-status", role: "status" });
  const copyBtn = (target, testid) => {
    const btn = h("button", { type: "button", class: "small", i18n: "train.copy", testid });
    btn.addEventListener("click", async () => setI18n(status, (await copyText(target.textContent)) ? "train.copied" : "train.copy_failed"));
    return btn;
  };
  const root = h(
    "section",
    { class: "full command-box", testid: "train-command", hidden: true },
    h("div", { class: "row between" }, h("strong", { i18n: "train.command_cli" }), copyBtn(cli, "train-copy-cli")),
    cli,
    h("div", { class: "row between" }, h("strong", { i18n: "train.command_curl" }), copyBtn(curl, "train-copy-curl")),
    curl,
    h("small", { class: "hint", i18n: "train.command_hint" }),
    status,
  );
  let seq = 0;
  async function refresh() {
    if (root.hidden) return;
    const mine = ++seq;
    let body;
    try {
      body = opts.body();
    } catch (err) {
      setBilingual(status, err.message_ja || err.message, err.message);
      return;
    }
    try {
      const res = await post("/api/train/command", body);
      if (mine !== seq) return;
      cli.textContent = res.cli;
      curl.textContent = res.curl;
      status.textContent = "";
    } catch (err) {
      if (mine === seq) setBilingual(status, err.message_ja || err.message, err.message);
    }
  }
  button.addEventListener("click", () => {
    root.hidden = !root.hidden;
    button.setAttribute("aria-expanded", String(!root.hidden));
    refresh();
  });
  return { button, root, refresh };
}
