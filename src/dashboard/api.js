// The control-plane REST API (/monitor/api/v1): JSON in and out, the session cookie sent by
// the browser, and the session's CSRF token on every mutation.

const BASE = "/monitor/api/v1";
let csrf = "";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setCsrf(token) {
  csrf = token || "";
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", "the control plane does not answer (" + e.message + ")");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    throw new ApiError(res.status, err.code || "http_" + res.status, err.message || res.statusText);
  }
  return data;
}

export const me = () => call("GET", "/auth/me");
export const login = (name, password) => call("POST", "/auth/login", { name, password });
export const logout = () => call("POST", "/auth/logout", {});
export const workspaces = () => call("GET", "/workspaces");
export const workspace = (name) => call("GET", "/workspaces/" + encodeURIComponent(name));
export const status = () => call("GET", "/status");
export const action = (name, verb) =>
  call("POST", "/workspaces/" + encodeURIComponent(name) + "/" + verb, {});
export const logs = (name, tail = 500) =>
  call("GET", "/workspaces/" + encodeURIComponent(name) + "/logs?tail=" + tail);

/** A few samples of the Prometheus text at /monitor/metrics, by metric name (no labels). */
export async function metrics() {
  const res = await fetch("/monitor/metrics", { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw new ApiError(res.status, "http_" + res.status, res.statusText);
  const out = {};
  for (const line of (await res.text()).split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*) ([0-9.eE+-]+|NaN)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}
