// The host view: every chart of one host over a window that ends now (live, refreshed) or a
// fixed one (zoomed). Windows go to the API as minutes back from the server's "now".

import { getJson, hostmon, query } from "./api.js";
import { chartsFor, columns, draw, familyRequests, stepFor } from "./charts.js";
import { age, byUnit, clock, duration, el } from "./format.js";

export const PRESETS_MIN = [15, 60, 360, 1440, 10080, 43200]; // 15 min … 30 d
const MIN_WINDOW_MS = 30_000;
let skewMs = 0; // the server's clock minus ours, from the last live answer

// The window as the page states it: {live: true, minutes} or {live: false, fromMs, toMs}.
export function parseRange(params) {
  const from = Number(params.get("from"));
  const to = Number(params.get("to"));
  if (from > 0 && to > from) return { live: false, fromMs: from, toMs: to };
  const minutes = Number(params.get("range"));
  return { live: true, minutes: minutes > 0 ? minutes : 60 };
}

export function rangeHash(host, range) {
  const q = range.live ? `range=${range.minutes}` : `from=${range.fromMs}&to=${range.toMs}`;
  return `#/host/${encodeURIComponent(host)}?${q}`;
}

function serverNowMs() {
  return Date.now() + skewMs;
}

// {start, end} in minutes back from the server's now, and the window's length in ms.
function apiWindow(range) {
  if (range.live) return { start: range.minutes, end: 0, windowMs: range.minutes * 60_000 };
  const now = serverNowMs();
  const end = Math.max(0, (now - range.toMs) / 60_000);
  const start = Math.max(end + MIN_WINDOW_MS / 60_000, (now - range.fromMs) / 60_000);
  return { start: +start.toFixed(5), end: +end.toFixed(5), windowMs: (start - end) * 60_000 };
}

function toolbar(host, range) {
  const presets = document.getElementById("range-presets");
  presets.replaceChildren(
    ...PRESETS_MIN.map((m) => {
      const button = el("button", { type: "button", "aria-pressed": String(range.live && range.minutes === m) }, duration(m * 60_000));
      button.addEventListener("click", () => (location.hash = rangeHash(host, { live: true, minutes: m })));
      return button;
    }),
  );
  document.getElementById("zoom-out").onclick = () => {
    const minutes = range.live ? range.minutes * 2 : (range.toMs - range.fromMs) / 30_000;
    location.hash = rangeHash(host, { live: true, minutes: Math.min(Math.round(minutes), 43200) });
  };
  const live = document.getElementById("range-live");
  live.hidden = range.live;
  live.onclick = () => (location.hash = rangeHash(host, { live: true, minutes: 60 }));
  document.getElementById("range-label").textContent = range.live
    ? `last ${duration(range.minutes * 60_000)}, refreshing`
    : `${clock(range.fromMs)} – ${clock(range.toMs)}`;
}

function chartBox(chart) {
  const plot = el("div", { class: "plot" });
  const box = el("figure", { class: "chart", id: `chart-${chart.id}`, "data-chart": chart.id }, el("h2", {}, chart.title), plot);
  return { box, plot };
}

// What a chart shows, in words (for screen readers): each line's newest value.
function describe(chart, cols) {
  if (!cols.labels.length) return `${chart.title}: no samples in this window`;
  const newest = cols.labels.map((label, i) => {
    const ys = cols.data[i + 1];
    let j = ys.length - 1;
    while (j >= 0 && ys[j] === null) j -= 1;
    return `${label} ${byUnit(chart.unit, j >= 0 ? ys[j] : null)}`;
  });
  return `${chart.title}, newest: ${newest.join(", ")}`;
}

function plotWidthPx(plot) {
  return Math.max(240, Math.floor(plot.getBoundingClientRect().width));
}

// One view of one host: builds the chart boxes once, redraws on refresh.
export class HostView {
  constructor(host, range) {
    this.host = host;
    this.range = range;
    this.plots = new Map(); // chart id -> {box, plot, uplot}
    this.charts = [];
    this.theme = 0; // bumped when the colours change: every chart is drawn anew
  }

  recolour() {
    this.theme += 1;
    return this.refresh();
  }

  async start() {
    document.getElementById("host-title").textContent = this.host;
    toolbar(this.host, this.range);
    await this.refresh();
  }

  // The host's status and last sample, as the overview shows them (a silent host's charts
  // are empty in a window that ends now: this says why).
  async showStatus() {
    const line = document.getElementById("host-status");
    line.replaceChildren();
    const seen = (await getJson("hosts")).hosts.find((h) => h.host === this.host);
    if (!seen) {
      line.append("The store holds no samples of this host.");
      return;
    }
    const status = seen.status || "ok";
    const firing = (seen.firing || []).length ? ` (${seen.firing.join(", ")})` : "";
    line.append(
      el("span", { class: `status status-${status}` }, status),
      `${firing} · last sample `,
      el("time", { datetime: seen.last_sample, title: clock(seen.last_sample_ms) }, age(seen.age_s)),
    );
  }

  // The charts of what the store holds now (a fresh store gains metrics as the agent ships).
  async layout() {
    const charts = chartsFor(await getJson("metrics/names"));
    const ids = charts.map((c) => c.id).join();
    if (ids === this.charts.map((c) => c.id).join() && this.plots.size === charts.length) return;
    this.stop();
    this.charts = charts;
    const container = document.getElementById("charts");
    container.replaceChildren();
    for (const chart of charts) {
      const parts = chartBox(chart);
      container.append(parts.box);
      this.plots.set(chart.id, parts);
    }
    if (!charts.length) container.append(el("p", { class: "empty" }, "The store holds no metrics yet."));
  }

  async refresh() {
    await Promise.all([this.drawAll(), this.showStatus()]);
  }

  async drawAll() {
    await this.layout();
    const win = apiWindow(this.range);
    const first = this.plots.values().next().value;
    const widthPx = first ? plotWidthPx(first.plot) : 600;
    const step = stepFor(win.windowMs, widthPx);
    const requests = [...familyRequests(this.charts)].map(async ([family, metrics]) => {
      const path = `metrics?${query({ metrics: metrics.join(","), host: this.host, start: win.start, end: win.end, step })}`;
      const receivedAt = Date.now();
      const body = await getJson(path);
      if (this.range.live) skewMs = body.window.end_ms - receivedAt;
      return [family, path, body];
    });
    for (const [family, path, body] of await Promise.all(requests)) {
      for (const chart of this.charts.filter((c) => c.family === family)) this.drawChart(chart, path, body, widthPx);
    }
  }

  drawChart(chart, path, body, widthPx) {
    const parts = this.plots.get(chart.id);
    const cols = columns(chart, body);
    parts.xRange = [body.window.start_ms / 1000, body.window.end_ms / 1000];
    // Same lines, same width, same colours: new data into the same chart (a hover or a drag
    // in progress survives a refresh); otherwise a new chart.
    const key = `${cols.labels.join("\n")}|${widthPx}|${this.theme}`;
    if (parts.uplot && parts.key === key) {
      parts.uplot.setData(cols.data);
    } else {
      if (parts.uplot) parts.uplot.destroy();
      parts.plot.replaceChildren();
      const onZoom = (fromMs, toMs) => this.zoom(fromMs, toMs);
      parts.uplot = draw(parts.plot, chart, cols, widthPx, () => parts.xRange, onZoom);
      parts.key = key;
      if (!cols.labels.length) parts.plot.append(el("p", { class: "empty" }, "No samples in this window."));
    }
    parts.plot.setAttribute("role", "img");
    parts.plot.setAttribute("aria-label", describe(chart, cols));
    hostmon.charts[chart.id] = {
      title: chart.title,
      request: path,
      window: body.window,
      step_s: body.step_s,
      width_px: widthPx,
      stroke: parts.uplot.series[1]?.stroke?.() ?? null, // the first line's colour
      series: cols.labels,
      points: cols.data.slice(1).map((ys) => ys.filter((v) => v !== null).length),
    };
  }

  zoom(fromMs, toMs) {
    if (toMs - fromMs < MIN_WINDOW_MS) {
      const mid = (fromMs + toMs) / 2;
      fromMs = mid - MIN_WINDOW_MS / 2;
      toMs = mid + MIN_WINDOW_MS / 2;
    }
    location.hash = rangeHash(this.host, { live: false, fromMs: Math.round(fromMs), toMs: Math.round(toMs) });
  }

  stop() {
    for (const parts of this.plots.values()) if (parts.uplot) parts.uplot.destroy();
    this.plots.clear();
  }
}
