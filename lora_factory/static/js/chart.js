// The loss chart: vendored uPlot (static/vendor/uplot, MIT), resized with its container.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { t } from "./i18n.js";

export function createLossChart(container) {
  const xs = [];
  const ys = [];
  const width = () => Math.max(240, container.clientWidth || 600);
  const opts = {
    width: width(),
    height: 200,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false } },
    axes: [
      { label: t("job.step"), stroke: "#555", grid: { stroke: "#eee" } },
      { label: t("job.loss"), stroke: "#555", grid: { stroke: "#eee" }, size: 60 },
    ],
    series: [{ label: t("job.step") }, { label: t("job.loss"), stroke: "#2563eb", width: 2, points: { show: false } }],
  };
  const plot = new uPlot(opts, [xs, ys], container);
  container.dataset.testid = container.dataset.testid || "loss-chart";
  let pending = false;
  const redraw = () => {
    pending = false;
    plot.setData([xs, ys]);
  };
  const observer = new ResizeObserver(() => plot.setSize({ width: width(), height: 200 }));
  observer.observe(container);
  return {
    push(step, loss) {
      if (!Number.isFinite(loss)) return;
      const last = xs.length ? xs[xs.length - 1] : -Infinity;
      if (step < last) return;
      if (step === last) ys[ys.length - 1] = loss;
      else {
        xs.push(step);
        ys.push(loss);
      }
      if (!pending) {
        pending = true;
        requestAnimationFrame(redraw);
      }
    },
    get points() {
      return xs.length;
    },
    destroy() {
      observer.disconnect();
      plot.destroy();
    },
  };
}
