// The page: a router over location.hash (#/ the fleet, #/host/NAME?range=MIN the host view),
// the theme toggle, refreshing while a view ends at now, and the first-render mark the
// browser test reads (performance mark "hostmon:drawn").

import { hostmon } from "./api.js";
import { HostView, parseRange } from "./host.js";
import { renderOverview } from "./overview.js";

const REFRESH_MS = 10_000;
const THEME_KEY = "hostmon.theme";
let current = null; // {kind, view, timer}
let generation = 0;

function setTheme(theme) {
  const root = document.documentElement;
  if (theme) root.dataset.theme = theme;
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const toggle = document.getElementById("theme-toggle");
  toggle.textContent = dark ? "Light" : "Dark";
  toggle.setAttribute("aria-pressed", String(dark));
  toggle.title = dark ? "Switch to the light theme" : "Switch to the dark theme";
  return dark;
}

function initTheme() {
  let stored = null;
  try {
    stored = localStorage.getItem(THEME_KEY);
  } catch {
    /* no storage: follow the system */
  }
  let dark = setTheme(stored);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    if (document.documentElement.dataset.theme) return; // the toggle's choice wins
    dark = setTheme(null);
    if (current && current.kind === "host") current.view.recolour().catch(showError);
  });
  document.getElementById("theme-toggle").addEventListener("click", () => {
    dark = setTheme(dark ? "light" : "dark");
    try {
      localStorage.setItem(THEME_KEY, dark ? "dark" : "light");
    } catch {
      /* kept for this page only */
    }
    if (current && current.kind === "host") current.view.recolour().catch(showError); // canvas colours
  });
}

function showError(error) {
  const box = document.getElementById("error");
  box.textContent = `Could not load: ${error.message}`;
  box.hidden = false;
}

function status(text) {
  document.getElementById("status-line").textContent = text;
}

function crumbs(host) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren();
  if (!host) return;
  const link = document.createElement("a");
  link.href = "#/";
  link.textContent = "Fleet";
  nav.append(link, ` / ${host}`);
}

function stop() {
  if (!current) return;
  clearTimeout(current.timer);
  if (current.view) current.view.stop();
  current = null;
}

// Run LOAD now and, while the view is live, again every REFRESH_MS after each one finishes.
function schedule(mine, load, live) {
  const tick = async () => {
    if (mine !== generation) return;
    try {
      if (!document.hidden) {
        await load();
        hostmon.loads = (hostmon.loads || 0) + 1; // every finished (re)load, for the browser test
      }
      document.getElementById("error").hidden = true;
      status(live ? `updated ${new Date().toLocaleTimeString()}` : "fixed window: not refreshing");
    } catch (error) {
      showError(error);
    }
    if (mine === generation && live) current.timer = setTimeout(tick, REFRESH_MS);
  };
  return tick();
}

async function route() {
  stop();
  const mine = ++generation;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?");
  const overview = document.getElementById("overview");
  const hostview = document.getElementById("hostview");
  const match = path.match(/^\/host\/(.+)$/);
  hostmon.ready = false;
  hostmon.charts = {};
  if (!match) {
    crumbs(null);
    hostview.hidden = true;
    overview.hidden = false;
    document.title = "hostmon — fleet";
    current = { kind: "overview", view: null, timer: null };
    await schedule(mine, renderOverview, true);
  } else {
    const host = decodeURIComponent(match[1]);
    const range = parseRange(new URLSearchParams(search || ""));
    crumbs(host);
    overview.hidden = true;
    hostview.hidden = false;
    document.title = `hostmon — ${host}`;
    const view = new HostView(host, range);
    current = { kind: "host", view, timer: null };
    let started = false;
    await schedule(mine, () => (started ? view.refresh() : view.start().then(() => (started = true))), range.live);
  }
  if (mine !== generation) return;
  hostmon.ready = true;
  hostmon.route = hash;
  if (!performance.getEntriesByName("hostmon:drawn").length) performance.mark("hostmon:drawn");
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (current && current.kind === "host") current.view.refresh().catch(showError);
  }, 200);
});

initTheme();
performance.setResourceTimingBufferSize(5000);
window.addEventListener("hashchange", () => route().catch(showError));
route().catch(showError);
