// Line charts on a canvas with a time axis and hover values. History comes from
// GET /api/v1/stats/series (rolled-up per-minute aggregates), so a reload keeps it.
import { api, h } from "./common.js";

export const RANGES = {
  "1h": { seconds: 3600, step: 60, label: "last hour" },
  "24h": { seconds: 86400, step: 3600, label: "last 24 h" },
};

// The axis top: four ticks of a round step (1, 2, 2.5 or 5 times a power of ten).
export function niceCeiling(value) {
  const rough = value / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (rough <= step * power) return 4 * step * power;
  }
  return 40 * power;
}

const pad = (n) => String(n).padStart(2, "0");
const hhmm = (t) => `${pad(new Date(t).getHours())}:${pad(new Date(t).getMinutes())}`;

export class LineChart {
  // series: [{key, label}]; points: [{t (ms), [key]: number | null}]
  // fixedMax: the axis top when the values have a known range (a percentage: 100).
  constructor(canvas, series, format, minimum, fixedMax = null) {
    this.canvas = canvas;
    this.fixedMax = fixedMax;
    this.series = series;
    this.format = format;
    this.minimum = minimum;
    this.points = [];
    this.start = Date.now() - 3600 * 1000;
    this.end = Date.now();
    this.step = 60;
    this.hover = null;
    this.pending = false;
    this.tip = h("div", { class: "chart-tip", hidden: true, role: "status" });
    canvas.parentElement.style.position = "relative";
    canvas.parentElement.append(this.tip);
    new ResizeObserver(() => this.requestDraw()).observe(canvas);
    canvas.addEventListener("mousemove", (event) => this.onHover(event));
    canvas.addEventListener("mouseleave", () => { this.hover = null; this.tip.hidden = true; this.requestDraw(); });
  }

  setData(points, start, end, step) {
    this.points = points;
    this.start = start;
    this.end = end;
    this.step = step;
    this.requestDraw();
  }

  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  geometry() {
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    return { width, height, left: 48, right: width - 10, top: 10, bottom: height - 22 };
  }

  xOf(t, g) {
    return g.left + ((g.right - g.left) * (t - this.start)) / Math.max(1, this.end - this.start);
  }

  onHover(event) {
    if (!this.points.length) return;
    const g = this.geometry();
    const x = event.offsetX;
    let best = null;
    for (const point of this.points) {
      const distance = Math.abs(this.xOf(point.t, g) - x);
      if (!best || distance < best.distance) best = { point, distance };
    }
    if (!best || best.distance > 40) { this.tip.hidden = true; this.hover = null; this.requestDraw(); return; }
    this.hover = best.point;
    const lines = [hhmm(best.point.t), ...this.series.map((s) => `${s.label}: ${best.point[s.key] === null || best.point[s.key] === undefined ? "—" : this.format(best.point[s.key])}`)];
    this.tip.textContent = lines.join("  ·  ");
    this.tip.hidden = false;
    const px = this.xOf(best.point.t, g);
    this.tip.style.left = `${Math.max(0, Math.min(px - 60, g.width - this.tip.offsetWidth))}px`;
    this.tip.style.top = "0px";
    this.canvas.dataset.hover = lines.join(" | ");
    this.requestDraw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const g = this.geometry();
    if (!g.width || !g.height) return;
    if (canvas.width !== Math.round(g.width * ratio) || canvas.height !== Math.round(g.height * ratio)) {
      canvas.width = Math.round(g.width * ratio);
      canvas.height = Math.round(g.height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, g.width, g.height);
    const style = getComputedStyle(document.documentElement);
    const color = (name) => style.getPropertyValue(name).trim();

    let max = 0;
    for (const point of this.points) {
      for (const { key } of this.series) if (point[key] !== null && point[key] > max) max = point[key];
    }
    max = this.fixedMax ?? niceCeiling(Math.max(max * 1.05, this.minimum));

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = color("--muted");
    ctx.strokeStyle = color("--grid");
    ctx.lineWidth = 1;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i += 1) {
      const y = Math.round(g.bottom - (g.bottom - g.top) * (i / 4)) + 0.5;
      ctx.beginPath(); ctx.moveTo(g.left, y); ctx.lineTo(g.right, y); ctx.stroke();
      ctx.fillText(this.format((max * i) / 4), g.left - 6, y);
    }
    ctx.textBaseline = "top";
    const ticks = 6;
    for (let i = 0; i <= ticks; i += 1) {
      const t = this.start + ((this.end - this.start) * i) / ticks;
      ctx.textAlign = i === 0 ? "left" : i === ticks ? "right" : "center";
      ctx.fillText(hhmm(t), this.xOf(t, g), g.bottom + 6);
    }

    // A value of 0 sits just above the axis line (not on it), so a flat low series stays
    // visible; the series are drawn from the largest down, the smallest on top.
    const yOf = (v) => g.bottom - 2 - ((g.bottom - g.top - 2) * v) / max;
    const palette = [color("--series-a"), color("--series-b"), color("--series-c") || color("--series-a")];
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    const gap = this.step * 1000 * 1.5;
    [...this.series.keys()].reverse().forEach((index) => {
      const { key } = this.series[index];
      ctx.strokeStyle = palette[index];
      ctx.fillStyle = palette[index];
      const runs = [];
      let run = [];
      let previous = null;
      for (const point of this.points) {
        const value = point[key];
        if (value === null || value === undefined || (previous !== null && point.t - previous > gap)) {
          if (run.length) runs.push(run);
          run = [];
        }
        if (value !== null && value !== undefined) run.push([this.xOf(point.t, g), yOf(value)]);
        previous = point.t;
      }
      if (run.length) runs.push(run);
      for (const points of runs) {
        if (points.length === 1) {
          ctx.beginPath();
          ctx.arc(points[0][0], points[0][1], 2.5, 0, Math.PI * 2);
          ctx.fill();
          continue;
        }
        ctx.beginPath();
        points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.stroke();
      }
    });
    if (this.hover) {
      const x = Math.round(this.xOf(this.hover.t, g)) + 0.5;
      ctx.strokeStyle = color("--muted");
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x, g.top); ctx.lineTo(x, g.bottom); ctx.stroke();
    }
  }
}

// Several metrics of the series API merged into points {t, metric: value}.
export async function loadSeries(metrics, range, endpoint) {
  const { seconds, step } = RANGES[range];
  const end = Date.now();
  const start = end - seconds * 1000;
  const since = new Date(start).toISOString();
  const until = new Date(end).toISOString();
  const answers = await Promise.all(metrics.map((metric) => {
    const params = new URLSearchParams({ metric, since, until, step: String(step) });
    if (endpoint) params.set("endpoint", endpoint);
    return api("GET", `/stats/series?${params}`);
  }));
  const byTime = new Map();
  answers.forEach((answer, index) => {
    for (const point of (answer && answer.points) || []) {
      const t = new Date(point.t).getTime();
      if (!byTime.has(t)) byTime.set(t, { t });
      byTime.get(t)[metrics[index]] = point.value;
    }
  });
  const points = [...byTime.values()].sort((a, b) => a.t - b.t);
  return { points, start, end, step };
}
