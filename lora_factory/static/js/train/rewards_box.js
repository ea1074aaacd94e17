// The reward functions a GRPO run may name in params.rewards: the modality's built-ins and those plugins
// register (register_reward_functions), from GET /api/rewards; shown under the method while it learns from
// rewards, so a user sees which names exist (and which plugin brings each) before typing them.
import { get } from "../api.js";
import { h, setBilingual } from "../dom.js";

export function createRewardsBox(modality) {
  const list = h("ul", { class: "small-text", testid: "train-rewards-list" });
  const root = h("div", { class: "field full", testid: "train-rewards", hidden: true }, h("strong", { i18n: "train.rewards_title" }), h("small", { class: "hint", i18n: "train.rewards_hint" }), list);
  let rewards = [];

  function render() {
    list.replaceChildren(
      ...rewards.map((r) => {
        const from = r.source === "plugin" ? h("span", { class: "badge", testid: "train-reward-plugin", text: r.plugin }) : null;
        const words = h("span", { class: "muted" });
        setBilingual(words, ` — ${r.description_ja || r.description_en || ""}`, ` — ${r.description_en || r.description_ja || ""}`);
        return h("li", { testid: `train-reward-${r.name}`, "data-source": r.source }, h("code", { text: r.name }), " ", from, words);
      }),
    );
  }

  return {
    root,
    /** Show the list while the chosen method learns from rewards. */
    show(method, methods) {
      const info = (methods || []).find((x) => x.id === method);
      root.hidden = !(info && info.uses_rewards);
    },
    async refresh() {
      const data = await get("/api/rewards").catch(() => ({ rewards: [] }));
      rewards = (data.rewards || []).filter((r) => r.modality === modality || r.modality === null);
      render();
    },
  };
}
