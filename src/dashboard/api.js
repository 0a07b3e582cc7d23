// The control-plane REST API (/monitor/api/v1): JSON in and out, the session cookie sent by
// the browser, and the session's CSRF token on every mutation.

const BASE = "/monitor/api/v1";
const PAGE = 100; // workspaces a list page asks for
let csrf = "";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A server's message as a sentence (they come without the final full stop). */
export function sentence(text) {
  const t = String(text || "").trim();
  return !t || /[.!?…)]$/.test(t) ? t : t + ".";
}

export function setCsrf(token) {
  csrf = token || "";
}

// The headers of one API request: JSON accepted, and on a mutation the CSRF token (and the
// body's type when there is one).
function headersFor(method, body, accept = "application/json") {
  const headers = { Accept: accept };
  if (method !== "GET" && method !== "HEAD") {
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  return headers;
}

async function send(method, path, body, { accept, signal } = {}) {
  try {
    return await fetch(BASE + path, {
      method,
      headers: headersFor(method, body, accept),
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "the control plane does not answer (" + e.message + ")");
  }
}

// The ApiError for a refused request, from its {"error": {"code", "message"}} body (a JSON
// document, or the one line of an NDJSON stream that failed before it began).
function refusal(res, text) {
  let data = null;
  for (const doc of [text, text.split("\n")[0]]) {
    try {
      data = doc.trim() ? JSON.parse(doc) : null;
      break;
    } catch {
      data = null;
    }
  }
  const err = data && data.error ? data.error : {};
  return new ApiError(res.status, err.code || "http_" + res.status, err.message || res.statusText);
}

async function call(method, path, body) {
  const res = await send(method, path, body);
  const text = await res.text();
  if (!res.ok) throw refusal(res, text);
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/**
 * Opens a streamed answer (NDJSON): the same headers as every call, and the same ApiError when
 * the request is refused before the stream begins. Give the Response to ndjson().
 */
export async function openStream(method, path, body, signal) {
  const res = await send(method, path, body, { accept: "application/x-ndjson", signal });
  if (!res.ok) throw refusal(res, await res.text());
  return res;
}

/** The objects of an NDJSON answer, one a line, as they arrive. */
export async function* ndjson(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parse = (line) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new ApiError(res.status, "bad_stream", "the control plane sent a line that is not JSON: " + line.slice(0, 200));
    }
  };
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) yield parse(line);
      }
    }
    buf += decoder.decode();
    if (buf.trim()) yield parse(buf);
  } finally {
    reader.releaseLock();
  }
}

export const me = () => call("GET", "/auth/me");
export const login = (name, password) => call("POST", "/auth/login", { name, password });
export const logout = () => call("POST", "/auth/logout", {});
/** One page of the list: {"workspaces": [...], "next": cursor|null}. */
export const workspaces = (after = "", limit = PAGE) =>
  call("GET", "/workspaces?limit=" + limit + (after ? "&after=" + encodeURIComponent(after) : ""));
export const templates = () => call("GET", "/templates");
/** {"name", "template"?, "clone_of"?, "public"?}: answers the new workspace (201). */
export const createWorkspace = (body) => call("POST", "/workspaces", body);
export const deleteWorkspace = (name) => call("DELETE", "/workspaces/" + encodeURIComponent(name));
/** Runs argv in the workspace; the streamed answer (give it to ndjson()). */
export const run = (name, command, timeout, signal) =>
  openStream("POST", "/workspaces/" + encodeURIComponent(name) + "/run?stream=1", { command, timeout }, signal);
export const workspace = (name) => call("GET", "/workspaces/" + encodeURIComponent(name));
export const status = () => call("GET", "/status");
export const workspaceStatus = (name) => call("GET", "/workspaces/" + encodeURIComponent(name) + "/status");
export const sync = (name) => call("POST", "/workspaces/" + encodeURIComponent(name) + "/sync", {});
export const action = (name, verb) =>
  call("POST", "/workspaces/" + encodeURIComponent(name) + "/" + verb, {});
/** Backups: the destinations and each workspace's last snapshot; one workspace's snapshots. */
export const backups = () => call("GET", "/backups");
export const snapshots = (name) => call("GET", "/backups?workspace=" + encodeURIComponent(name));
export const startBackup = (workspace) => call("POST", "/backups", { workspace });
/** {"destination", "snapshot", "mode", "dry_run"?}: the plan (dry run) or the queued job. */
export const restore = (name, body) => call("POST", "/workspaces/" + encodeURIComponent(name) + "/restore", body);
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

/**
 * Every workspace, following the list's `next` cursor page by page; `onPage(workspaces)` sees
 * each page as it arrives.
 */
export async function allWorkspaces(onPage = () => {}) {
  const all = [];
  let after = "";
  for (let pages = 0; pages < 10000; pages++) {
    const r = await workspaces(after);
    const page = (r && r.workspaces) || [];
    all.push(...page);
    onPage(page);
    const next = r && typeof r.next === "string" ? r.next : "";
    // A cursor that does not move on would loop for ever: stop at it.
    if (!next || next === after || page.length === 0) break;
    after = next;
  }
  return all;
}
