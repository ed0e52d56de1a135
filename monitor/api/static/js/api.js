// The API client: one fetch wrapper for every data request. It sends the bearer token the
// page asked for (kept in sessionStorage, never in a URL), asks again when the API answers
// 401, and records every request for the browser test (window.__hostmon.requests).

const TOKEN_KEY = "hostmon.token";
const MAX_RECORDED = 500; // the newest requests only: a page left open for days stays small
export const hostmon = (window.__hostmon = window.__hostmon || { requests: [], charts: {} });

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let tokenPrompt = null; // one pending prompt shared by every request that hit 401

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function keepToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    /* private mode: the token lives in memory only, in this closure */
  }
  memoryToken = token;
}

let memoryToken = storedToken();

function askToken(refused) {
  if (tokenPrompt) return tokenPrompt;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").hidden = !refused;
  tokenPrompt = new Promise((resolve) => {
    const submit = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      form.removeEventListener("submit", submit);
      dialog.close();
      input.value = "";
      keepToken(token);
      tokenPrompt = null;
      resolve(token);
    };
    form.addEventListener("submit", submit);
  });
  dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
  dialog.showModal();
  input.focus();
  return tokenPrompt;
}

// GET PATH (relative to the page, e.g. "metrics?start=10") as JSON. ACCEPT lists the statuses
// whose JSON body is an answer (/health answers 503 with a body that says why).
export async function getJson(path, { accept = [200] } = {}) {
  let refused = false;
  for (;;) {
    const headers = { Accept: "application/json" };
    if (memoryToken) headers.Authorization = `Bearer ${memoryToken}`;
    hostmon.requests.push(path);
    if (hostmon.requests.length > MAX_RECORDED) hostmon.requests.splice(0, hostmon.requests.length - MAX_RECORDED);
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) {
      await askToken(refused || Boolean(memoryToken));
      refused = true;
      continue;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(response.status, `${path}: not JSON (HTTP ${response.status})`);
    }
    if (!accept.includes(response.status)) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return body;
  }
}

// A query string from an object, skipping null/undefined values.
export function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined) continue;
    parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
  }
  return parts.join("&");
}
