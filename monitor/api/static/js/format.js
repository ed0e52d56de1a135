// Numbers and times as a person reads them.

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(value, suffix = "") {
  if (value === null || value === undefined) return "–";
  let v = Math.abs(value);
  let i = 0;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  const sign = value < 0 ? "-" : "";
  return `${sign}${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${BYTE_UNITS[i]}${suffix}`;
}

export function percent(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(1)} %`;
}

export function plain(value) {
  return value === null || value === undefined ? "–" : value.toFixed(value >= 100 ? 0 : 2);
}

// A value in UNIT (the catalog's: "percent", "bytes", "bytes/s", "1/s", "load").
export function byUnit(unit, value) {
  if (unit === "percent") return percent(value);
  if (unit === "bytes") return bytes(value);
  if (unit === "bytes/s") return bytes(value, "/s");
  if (unit === "1/s") return value === null || value === undefined ? "–" : `${plain(value)}/s`;
  return plain(value);
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, seconds);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export function clock(ms) {
  return new Date(ms).toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

export function duration(ms) {
  const minutes = ms / 60000;
  if (minutes < 120) return `${Math.round(minutes)} min`;
  if (minutes < 2880) return `${(minutes / 60).toFixed(minutes % 60 ? 1 : 0)} h`;
  return `${(minutes / 1440).toFixed(minutes % 1440 ? 1 : 0)} d`;
}

// An element with attributes and children (strings become text nodes: no HTML is parsed).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
