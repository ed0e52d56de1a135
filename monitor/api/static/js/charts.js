// The host view's charts: which exist (from /metrics/names), the step for a window and a
// chart's pixel width, the API's series turned into uPlot's aligned columns, and the uPlot
// instances themselves (drag-to-zoom calls back with the selected window in ms).

import { byUnit } from "./format.js";

// Bucket widths in seconds, as the API's own (monitor/api/views.py NICE_STEPS_MS).
const NICE_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const HEIGHT_PX = 200;

// The smallest round step giving at most WIDTH_PX buckets over WINDOW_MS (a bucket per pixel).
export function stepFor(windowMs, widthPx) {
  const least = windowMs / Math.max(widthPx - 1, 1) / 1000;
  return NICE_STEPS_S.find((s) => s >= least) ?? Math.ceil(least / 86400) * 86400;
}

// Chart definitions. A host-family chart draws several metrics of the host's one series;
// a tagged family's chart draws one metric, one line per mount, device or interface.
const HOST_CHARTS = [
  { id: "cpu", title: "CPU busy (overall and per core)", unit: "percent", match: (n) => /^cpu_usage_/.test(n) },
  { id: "memory", title: "Memory in use", unit: "percent", match: (n) => n === "memory_usage" },
  { id: "swap", title: "Swap in use", unit: "percent", match: (n) => n === "swap_used_percent" },
  { id: "load", title: "Load average", unit: "load", match: (n) => /^load_/.test(n) },
  { id: "disk-total", title: "Disk I/O, all disks", unit: "bytes/s", match: (n) => n === "disk_read" || n === "disk_write" },
  {
    id: "network-total",
    title: "Network, all interfaces",
    unit: "bytes/s",
    match: (n) => n === "network_sent" || n === "network_recv",
  },
];
const TAGGED_CHARTS = [
  ["filesystem_used_percent", "Filesystem space in use, per mount"],
  ["filesystem_inodes_used_percent", "Filesystem inodes in use, per mount"],
  ["disk_read_bytes_per_s", "Disk reads, per device"],
  ["disk_write_bytes_per_s", "Disk writes, per device"],
  ["disk_busy_percent", "Disk busy, per device"],
  ["network_recv_bytes_per_s", "Network received, per interface"],
  ["network_sent_bytes_per_s", "Network sent, per interface"],
  ["network_errors_in_per_s", "Network receive errors, per interface"],
  ["network_drops_in_per_s", "Network receive drops, per interface"],
];

// [{id, title, unit, family, metrics, tagKey}] for what the store holds (names: /metrics/names).
export function chartsFor(names) {
  const details = names.details || [];
  const hostNames = details.filter((d) => d.family === "host").map((d) => d.name);
  const charts = [];
  for (const def of HOST_CHARTS) {
    const metrics = hostNames.filter(def.match);
    if (metrics.length) charts.push({ ...def, family: "host", metrics, tagKey: null });
  }
  for (const [metric, title] of TAGGED_CHARTS) {
    const info = details.find((d) => d.name === metric);
    if (!info) continue;
    charts.push({ id: metric, title, unit: info.unit, family: info.family, metrics: [metric], tagKey: info.tag_key });
  }
  return charts;
}

// The families to request and each one's metrics (one request per family).
export function familyRequests(charts) {
  const families = new Map();
  for (const chart of charts) {
    const list = families.get(chart.family) || [];
    for (const m of chart.metrics) if (!list.includes(m)) list.push(m);
    families.set(chart.family, list);
  }
  return families;
}

// uPlot's columns for CHART from one /metrics answer: [xs (s), ys...] and the series' labels.
export function columns(chart, body) {
  const stamps = new Set();
  const lines = []; // [{label, values: Map(ts_ms -> value)}]
  for (const series of body.series) {
    if (chart.tagKey === null) {
      for (const metric of chart.metrics) lines.push({ label: metric, metric, tags: null, points: series.points });
    } else {
      const tag = series.tags[chart.tagKey];
      lines.push({ label: `${chart.tagKey}=${tag}`, metric: chart.metrics[0], tags: tag, points: series.points });
    }
    for (const p of series.points) stamps.add(p.ts_ms);
  }
  const xs = [...stamps].sort((a, b) => a - b);
  const index = new Map(xs.map((ts, i) => [ts, i]));
  const ys = lines.map((line) => {
    const column = new Array(xs.length).fill(null);
    for (const p of line.points) {
      const v = p[line.metric];
      if (v !== undefined) column[index.get(p.ts_ms)] = v;
    }
    return column;
  });
  const present = lines.map((line, i) => ys[i].some((v) => v !== null));
  return {
    data: [xs.map((ts) => ts / 1000), ...ys.filter((_, i) => present[i])],
    labels: lines.filter((_, i) => present[i]).map((l) => l.label),
  };
}

// The colour custom property NAME stands for now (canvas cannot read light-dark() itself).
function cssVar(name) {
  const probe = document.createElement("span");
  probe.style.color = `var(${name})`;
  document.body.append(probe);
  const colour = getComputedStyle(probe).color;
  probe.remove();
  return colour;
}

function seriesStyle(label, i, total) {
  const colour = cssVar(`--chart-${(i % 8) + 1}`);
  const core = /^cpu_usage_\d+$/.test(label);
  return { label, stroke: colour, width: core ? 1 : 2, alpha: core && total > 4 ? 0.6 : 1, spanGaps: false };
}

// A uPlot in TARGET for CHART with COLS; its x scale spans X_RANGE() (seconds), read at every
// redraw, so new data (setData) keeps the window; ON_ZOOM(startMs, endMs) after a drag.
export function draw(target, chart, cols, widthPx, xRange, onZoom) {
  const axis = cssVar("--chart-axis");
  const grid = { stroke: cssVar("--chart-grid"), width: 1 };
  const format = (u, v) => byUnit(chart.unit, v);
  const options = {
    width: widthPx,
    height: HEIGHT_PX,
    series: [{}, ...cols.labels.map((label, i) => ({ ...seriesStyle(label, i, cols.labels.length), value: format }))],
    scales: {
      x: { time: true, range: () => xRange() },
      y: chart.unit === "percent" ? { range: (u, min, max) => [0, Math.max(100, max || 0)] } : { auto: true },
    },
    axes: [
      { stroke: axis, grid, ticks: grid },
      { stroke: axis, grid, ticks: grid, size: 70, values: (u, vals) => vals.map((v) => byUnit(chart.unit, v)) },
    ],
    cursor: { drag: { x: true, y: false, setScale: false } },
    legend: { live: true },
    hooks: {
      setSelect: [
        (u) => {
          if (u.select.width < 3) return;
          const from = u.posToVal(u.select.left, "x") * 1000;
          const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          onZoom(Math.round(from), Math.round(to));
        },
      ],
    },
  };
  return new uPlot(options, cols.data, target);
}
