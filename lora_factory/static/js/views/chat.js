// The chat view of the 推論 tab: streamed tokens (POST /api/infer/chat, text/event-stream read
// with fetch + ReadableStream, since EventSource cannot POST), base model and adapter choice, and a
// side by side comparison of base and adapter (two streams).
import { ApiError, post, postSSE } from "../api.js";
import { defaultName, field, h, select, setI18n, withBusy } from "../dom.js";
import { listModels, refreshModelAndAdapter } from "../lists.js";

export function mountChatView(panel, app) {
  const m = app.modality;
  const baseSel = select([], { testid: "infer-base-model" });
  const adapterSel = select([], { testid: "infer-adapter" });
  const maxTokens = h("input", { type: "number", min: 1, max: 4096, value: 64, testid: "infer-max-tokens" });
  const temperature = h("input", { type: "number", min: 0, max: 2, step: "0.05", value: 0.7, testid: "infer-temperature" });
  const compare = h("input", { type: "checkbox", testid: "infer-compare" });
  const output = h("div", { class: "chat-log", testid: "chat-output", "aria-live": "polite", tabindex: "0" });
  const input = h("textarea", { rows: 2, testid: "chat-input", i18nPlaceholder: "infer.placeholder" });
  const send = h("button", { type: "submit", class: "primary", i18n: "infer.send", testid: "chat-send" });
  const stop = h("button", { type: "button", i18n: "infer.stop", testid: "chat-stop", disabled: true });
  const clearBtn = h("button", { type: "button", i18n: "infer.clear", testid: "chat-clear" });
  const compareId = `infer-compare-${m}`;
  compare.id = compareId;
  // compare -> preference data: the chosen answers go to this dataset; one click trains DPO on it
  const prefName = h("input", { type: "text", value: "compare_prefs", testid: "pref-dataset", autocomplete: "off" });
  const prefCount = h("span", { class: "muted mono", testid: "pref-count", text: "" });
  const dpoBtn = h("button", { type: "button", i18n: "infer.pref_train_dpo", testid: "pref-train-dpo", disabled: true });
  const prefRow = h("div", { class: "field full", hidden: true }, field("infer.pref_dataset", prefName, "infer.pref_hint"), h("div", { class: "row" }, dpoBtn, prefCount));
  compare.addEventListener("change", () => {
    prefRow.hidden = !compare.checked;
  });

  const history = [];
  let controller = null;

  const settings = h(
    "div",
    { class: "card form-grid" },
    field("infer.base_model", baseSel),
    field("infer.adapter", adapterSel),
    field("infer.max_new_tokens", maxTokens),
    field("infer.temperature", temperature),
    h("div", { class: "field check full" }, compare, h("label", { for: compareId, i18n: "infer.compare" })),
    prefRow,
  );
  const form = h("form", { class: "chat-form" }, field("infer.message", input, "infer.enter_hint"), h("div", { class: "row" }, send, stop, clearBtn));
  panel.append(settings, h("div", { class: "card chat" }, output, form));

  function bubble(role, labelKey) {
    const text = h("span", { class: "bubble-text" });
    const el = h("div", { class: `bubble bubble-${role}`, testid: role === "user" ? "chat-question" : "chat-answer" }, h("span", { class: "bubble-role", i18n: labelKey }), text);
    return { el, text };
  }

  async function stream(body, target, signal) {
    let full = "";
    target.el.dataset.done = "false";
    target.el.classList.add("is-streaming");
    await postSSE(
      "/api/infer/chat",
      body,
      (event, data) => {
        if (event === "token") {
          full += data && typeof data === "object" ? (data.text ?? "") : String(data);
          target.text.textContent = full;
        } else if (event === "done") {
          if (data && typeof data.text === "string") full = data.text;
          target.text.textContent = full;
          if (data && data.usage) target.el.title = JSON.stringify(data.usage);
        } else if (event === "error") {
          throw new ApiError(500, data && data.error ? data : { error: data });
        }
        output.scrollTop = output.scrollHeight;
      },
      signal,
    );
    target.el.classList.remove("is-streaming");
    target.el.dataset.done = "true";
    if (!full) setI18n(target.text, "infer.empty_answer");
    return full;
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    withBusy(send, async () => {
      input.value = "";
      const user = bubble("user", "role.user");
      user.text.textContent = content;
      output.append(user.el);
      history.push({ role: "user", content });
      controller = new AbortController();
      stop.disabled = false;
      const params = { max_new_tokens: Number(maxTokens.value) || 64, temperature: Number(temperature.value) };
      const base = { modality: m, base_model: baseSel.value, messages: [...history], params, stream: true };
      try {
        if (compare.checked) {
          const left = bubble("assistant", "infer.base_answer");
          const right = bubble("assistant", "infer.adapter_answer");
          const pair = h("div", { class: "compare", testid: "chat-compare" }, left.el, right.el);
          output.append(pair);
          const prompt = [...history];
          const leftModel = { base_model: baseSel.value, adapter: null };
          const rightModel = { base_model: baseSel.value, adapter: adapterSel.value || null };
          const [a, b] = await Promise.all([
            stream({ ...base, adapter: null }, left, controller.signal),
            stream({ ...base, adapter: adapterSel.value || null }, right, controller.signal),
          ]);
          pair.after(choiceButtons(prompt, [a, leftModel], [b, rightModel]));
          // A comparison is one turn: keep the base's answer in the history.
          history.push({ role: "assistant", content: a });
        } else {
          const answer = bubble("assistant", adapterSel.value ? "infer.adapter_answer" : "role.assistant");
          output.append(answer.el);
          const text = await stream({ ...base, adapter: adapterSel.value || null }, answer, controller.signal);
          history.push({ role: "assistant", content: text });
        }
      } finally {
        stop.disabled = true;
        controller = null;
      }
    });
  });

  /** Two buttons under a comparison: mark the better answer (appended to the preference dataset). */
  function choiceButtons(prompt, left, right) {
    const box = h("div", { class: "row compare-choice", testid: "pref-choice" });
    const choose = (better, worse, btn) =>
      withBusy(btn, async () => {
        const res = await post("/api/datasets/preference_choice", {
          modality: m, dataset: prefName.value.trim() || "compare_prefs", messages: prompt,
          chosen: better[0], rejected: worse[0], chosen_model: better[1], rejected_model: worse[1],
        });
        prefName.value = res.name;
        prefCount.textContent = `${res.rel_path}: ${res.rows}`;
        dpoBtn.disabled = false;
        box.replaceChildren(h("span", { class: "muted", i18n: "infer.pref_saved" }));
      });
    const leftBtn = h("button", { type: "button", i18n: "infer.pref_left", testid: "pref-left-better" });
    const rightBtn = h("button", { type: "button", i18n: "infer.pref_right", testid: "pref-right-better" });
    leftBtn.addEventListener("click", () => choose(left, right, leftBtn));
    rightBtn.addEventListener("click", () => choose(right, left, rightBtn));
    box.append(leftBtn, rightBtn);
    return box;
  }

  dpoBtn.addEventListener("click", () =>
    withBusy(dpoBtn, async () => {
      const name = prefName.value.trim().endsWith(".jsonl") ? prefName.value.trim() : `${prefName.value.trim()}.jsonl`;
      const res = await post("/train/start", { modality: m, base_model: baseSel.value, dataset: name, output_name: defaultName("dpo"), preset: "quick", params: { method: "dpo" } });
      prefCount.textContent = `DPO: ${res.job_id}`;
      prefCount.dataset.jobId = res.job_id;
    }),
  );

  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  clearBtn.addEventListener("click", () => {
    history.length = 0;
    output.replaceChildren();
  });

  // a random-weight demo model answers with meaningless text: said before anyone wonders why
  const demoNote = h("p", { class: "callout", testid: "chat-demo-note", i18n: "chat.demo_model", hidden: true });
  settings.after(demoNote);
  let models = [];
  const showDemoNote = () => {
    const chosen = models.find((x) => (x.rel_path || x.name) === baseSel.value);
    demoNote.hidden = !(chosen && chosen.demo);
  };
  baseSel.addEventListener("change", showDemoNote);

  async function refresh() {
    await refreshModelAndAdapter(m, baseSel, adapterSel);
    models = await listModels(m).catch(() => []);
    // "推論で比較" after a training: that base, that adapter, side by side
    const wanted = app.pendingInfer;
    if (wanted) {
      app.pendingInfer = null;
      if (wanted.base_model && [...baseSel.options].some((o) => o.value === wanted.base_model)) baseSel.value = wanted.base_model;
      const adapter = [...adapterSel.options].find((o) => o.value === wanted.adapter || o.textContent === wanted.adapter || o.value.endsWith(`/${wanted.adapter}`));
      if (adapter) adapterSel.value = adapter.value;
      if (wanted.compare && !compare.checked) {
        compare.checked = true;
        compare.dispatchEvent(new Event("change"));
      }
      input.focus();
    }
    showDemoNote();
  }
  return { onShow: refresh };
}
