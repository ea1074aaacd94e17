// デバイス: the devices jobs share (GET /api/system's "devices") and what runs on each: a job (its kind
// and output name, its id as the History tab shows it) or the chat / generation model. None: every job runs on the CPU.
import { h, setI18n } from "../dom.js";

function holder(device) {
  const cell = h("td", { testid: `device-holder-${device.id}` });
  if (device.job) {
    cell.append(h("span", { text: `${device.job.kind} ${device.job.output_name || ""} ` }), h("code", { class: "muted", text: device.job.id }));
    cell.dataset.job = device.job.id;
  }
  if (device.inference) cell.append(h("span", { class: "badge", i18n: "devices.inference", testid: `device-inference-${device.id}` }));
  if (!device.job && !device.inference) cell.append(h("span", { class: "muted", i18n: "devices.free" }));
  return cell;
}

export function devicesCard() {
  const body = h("tbody", { testid: "device-list" });
  const empty = h("p", { class: "muted", i18n: "devices.none", testid: "devices-none", hidden: true });
  const table = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "list" },
      h("thead", {}, h("tr", {}, ["devices.id", "devices.name", "devices.memory", "devices.holder"].map((k) => h("th", { scope: "col", i18n: k })))),
      body,
    ),
  );
  const root = h("div", { class: "card", testid: "system-devices" }, h("h3", { i18n: "devices.title" }), h("p", { class: "muted lead-in", i18n: "devices.lead" }), empty, table);

  function render(devices) {
    const list = Array.isArray(devices) ? devices : [];
    empty.hidden = list.length > 0;
    table.hidden = list.length === 0;
    body.replaceChildren(
      ...list.map((d) => {
        const name = h("td", { text: d.name || d.id });
        if (d.kind === "cpu") setI18n(name, "devices.simulated", { n: d.id.split(":")[1] });
        return h(
          "tr",
          { testid: `device-row-${d.id}` },
          h("td", { text: d.id }),
          name,
          h("td", { text: d.vram_total_mb ? `${(d.vram_total_mb / 1024).toFixed(1)} GiB` : "-" }),
          holder(d),
        );
      }),
    );
  }
  return { root, render };
}
