// The dashboard: sign-in, the workspace list kept live by /monitor/ws, creating and deleting
// workspaces, the selected workspace's actions, logs, preview and run box, and system health.
// Plain ES modules, no build step.
import * as api from "./api.js";
import { Backups } from "./backups.js";
import { CreateForm } from "./create.js";
import { EventStream } from "./events.js";
import { loadHealth } from "./health.js";
import { LogViewer } from "./logs.js";
import { Preview } from "./preview.js";
import { RunBox } from "./run.js";
import { WorkspaceList } from "./workspaces.js";

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  authAvailable: true,
  selected: "",
  stream: null,
  wasDown: false,
  healthTimer: null,
  heartbeatTimer: null,
  logsLoading: 0,
};

const list = new WorkspaceList($("ws-list"), $("ws-empty"), $("ws-count"));
const logs = new LogViewer({
  pre: $("log"),
  search: $("log-search"),
  follow: $("log-follow"),
  clear: $("log-clear"),
  note: $("log-note"),
});
const preview = new Preview({
  frame: $("preview"),
  radios: document.querySelectorAll('input[name="device"]'),
  reload: $("preview-reload"),
  label: $("preview-size"),
});
const backups = new Backups({
  report: (text) => ($("action-result").textContent = text),
  failed: (e, what) => handleApiError(e, what),
});
const create = new CreateForm(
  {
    toggle: $("create-toggle"),
    form: $("create-form"),
    name: $("create-name"),
    nameError: $("create-name-error"),
    sources: document.querySelectorAll('input[name="create-source"]'),
    template: $("create-template"),
    clone: $("create-clone"),
    templateNote: $("create-template-note"),
    isPrivate: $("create-private"),
    submit: $("create-submit"),
    close: $("create-close"),
    error: $("create-error"),
    result: $("ws-result"),
  },
  list,
  {
    // The row appears now (creating); the live status events take it from there. A row that
    // is already there came from an event, which is newer than this answer.
    onCreated: (w) => {
      if (!list.get(w.name)) list.upsert(w);
      announce(`Created ${w.name}; it is starting`);
    },
    onApiError: (e) => handleApiError(e),
  },
);
list.onChange = () => {
  if (!$("create-form").hidden) create.refreshClones();
};
const runBox = new RunBox(
  {
    form: $("run-form"),
    command: $("run-command"),
    timeout: $("run-timeout"),
    submit: $("run-submit"),
    cancel: $("run-cancel"),
    error: $("run-error"),
    result: $("run-result"),
    output: $("run-output"),
  },
  { onApiError: (e) => handleApiError(e) },
);

function announce(text) {
  const live = $("live");
  live.textContent = "";
  // A new text node each time, so screen readers repeat an identical message.
  requestAnimationFrame(() => (live.textContent = text));
}

// ---- sign-in -------------------------------------------------------------------------------

function showLogin(message = "") {
  stopLive();
  state.user = null;
  state.selected = "";
  $("main").hidden = true;
  $("conn").hidden = true;
  $("who").hidden = true;
  $("logout").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  $("login-name").focus();
}

function showMain() {
  $("login-view").hidden = true;
  $("main").hidden = false;
  $("conn").hidden = false;
  if (state.user) {
    $("who").textContent = `${state.user.name} (${state.user.role})`;
    $("who").hidden = false;
    $("logout").hidden = false;
  }
  startLive();
}

// Where the gateway sent a browser from: a private workspace asks for a login and passes its
// address as ?next=. Only a path on this origin is followed: resolved against this origin, it
// must stay on it, and the raw value must be one "/" then no second "/" or "\\", with no
// control character or whitespace even once percent-decoded ("/%09/evil.example" is a tab
// that the URL parser drops, leaving "//evil.example").
function safeNext(raw, origin) {
  const next = String(raw || "");
  if (!next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "";
  let decoded = next;
  try {
    decoded = decodeURIComponent(next);
  } catch {
    return "";
  }
  // eslint-disable-next-line no-control-regex
  const bad = /[\u0000-\u0020\u007f-\u009f\u2028\u2029\u00a0\ufeff]/;
  if (bad.test(next) || bad.test(decoded)) return "";
  if (decoded.startsWith("//") || decoded.startsWith("/\\")) return "";
  let url;
  try {
    url = new URL(next, origin);
  } catch {
    return "";
  }
  if (url.origin !== origin) return "";
  return url.pathname + url.search + url.hash;
}

function nextPath() {
  return safeNext(new URLSearchParams(location.search).get("next"), location.origin);
}

function goNext() {
  const next = nextPath();
  if (!next) return false;
  location.assign(next);
  return true;
}

async function boot() {
  try {
    const r = await api.me();
    state.user = r.user;
    api.setCsrf(r.csrf);
    if (goNext()) return;
    showMain();
  } catch (e) {
    if (e.status === 403 && e.code === "forbidden") {
      // A session the control plane refuses here (several users on a shared origin): say why.
      showLogin(e.message);
    } else if (e.status === 401) {
      const next = nextPath();
      showLogin(next ? `${next} is a private workspace: sign in to open it.` : "");
    } else if (e.status === 404) {
      // A control plane without the auth endpoints: read-only, no sign-in.
      state.authAvailable = false;
      showMain();
    } else {
      showBanner("The control plane does not answer: " + e.message, "error");
      setTimeout(boot, 2000);
    }
  }
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("login-name").value.trim();
  const password = $("login-password").value;
  if (!name || !password) {
    $("login-error").textContent = "Enter your name and password.";
    return;
  }
  const button = ev.submitter || $("login-form").querySelector("button");
  button.disabled = true;
  try {
    const r = await api.login(name, password);
    state.user = r.user;
    api.setCsrf(r.csrf);
    $("login-password").value = "";
    if (goNext()) return;
    showMain();
    $("main").focus();
    announce(`Signed in as ${r.user.name}`);
  } catch (e) {
    $("login-error").textContent =
      e.status === 401 ? "Wrong name or password." : e.message || "Sign-in failed.";
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await api.logout();
  } catch {
    // Signed out either way on this page.
  }
  api.setCsrf("");
  showLogin("Signed out.");
});

// Any 401 from the API means the session ended: back to the sign-in form.
function handleApiError(e, what) {
  if (e.status === 401 && state.authAvailable) {
    showLogin("Your session ended; sign in again.");
    return true;
  }
  if (what) $("action-result").textContent = `${what}: ${e.message}`;
  return false;
}

// ---- live updates --------------------------------------------------------------------------

function showBanner(text, kind = "warn") {
  const b = $("banner");
  b.textContent = text;
  b.dataset.kind = kind;
  b.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
  $("banner").textContent = "";
}

function setConn(s, text) {
  const c = $("conn");
  c.dataset.state = s;
  c.textContent = text;
}

function startLive() {
  if (state.stream) return;
  state.stream = new EventStream({ onEvent, onState });
  state.stream.start();
  refreshList();
  refreshHealth();
  clearInterval(state.healthTimer);
  state.healthTimer = setInterval(refreshHealth, 15000);
  route();
}

function stopLive() {
  if (state.stream) state.stream.stop();
  state.stream = null;
  clearInterval(state.healthTimer);
  clearInterval(state.heartbeatTimer);
  hideBanner();
}

function onState(s, info) {
  if (s === "open") {
    setConn("open", "live");
    if (state.wasDown) {
      hideBanner();
      announce("Reconnected; the list is live again.");
      refreshList();
      refreshHealth();
      if (state.selected) loadLogs(state.selected);
    }
    state.wasDown = false;
    return;
  }
  state.wasDown = true;
  setConn("down", "reconnecting");
  const secs = (info.delay / 1000).toFixed(info.delay < 1000 ? 1 : 0);
  showBanner(`Connection to the control plane lost: reconnecting in ${secs} s (attempt ${info.attempt})…`);
}

function onEvent(e) {
  switch (e.type) {
    case "hello":
      list.replace(e.workspaces || []);
      if (state.selected) renderDetail();
      break;
    case "status": {
      if (e.status === "removed") {
        list.remove(e.workspace);
        announce(`${e.workspace} was removed`);
        refreshHealthSoon();
        if (state.selected === e.workspace) renderDetail();
        break;
      }
      const before = list.get(e.workspace);
      const added = list.upsert({
        name: e.workspace,
        status: e.status,
        frozen: e.frozen,
        phase: e.phase || "",
        reason: e.reason || "",
        error: e.error || "",
      });
      if (added) fetchOne(e.workspace);
      if (!before || before.status !== e.status) refreshHealthSoon();
      if (!before || before.status !== e.status) announce(`${e.workspace} is ${e.status}`);
      if (state.selected === e.workspace) renderDetail();
      break;
    }
    case "activity":
      list.upsert({ name: e.workspace, activity: e.level });
      if (state.selected === e.workspace) renderDetail();
      break;
    case "log":
      if (state.selected === e.workspace) logs.append(e.line);
      break;
    case "reload":
      if (state.selected === e.workspace && !$("panel-preview").hidden) preview.reload();
      break;
    case "job":
      refreshHealthSoon();
      break;
    case "backup":
      backups.onEvent(e);
      break;
    case "git":
      if (state.selected === e.workspace) loadGit(e.workspace);
      if (e.action === "preview") fetchOne(e.workspace);
      break;
    default:
      break;
  }
}

async function refreshList() {
  try {
    // Every page (the list has a `next` cursor past 100 workspaces), each shown as it comes.
    await api.allWorkspaces((page) => {
      for (const w of page) list.upsert(w);
    });
    if (state.selected) renderDetail();
  } catch (e) {
    handleApiError(e);
  }
}

async function fetchOne(name) {
  try {
    list.upsert(await api.workspace(name));
    if (state.selected === name) renderDetail();
  } catch (e) {
    handleApiError(e);
  }
}

async function refreshHealth() {
  await loadHealth($("health"));
}

let healthSoon = null;
function refreshHealthSoon() {
  clearTimeout(healthSoon);
  healthSoon = setTimeout(refreshHealth, 1000);
}
$("health-refresh").addEventListener("click", refreshHealth);

// ---- the selected workspace ----------------------------------------------------------------

function route() {
  const m = /^#\/w\/([^/]+)$/.exec(location.hash);
  const name = m ? decodeURIComponent(m[1]) : "";
  if (name === state.selected) return;
  state.selected = name;
  list.select(name);
  runBox.setWorkspace(name);
  $("action-result").textContent = "";
  if (!name) {
    $("detail").hidden = true;
    return;
  }
  $("detail").hidden = false;
  renderDetail();
  fetchOne(name);
  loadGit(name);
  backups.show(name);
  loadLogs(name);
  if (!$("panel-preview").hidden) preview.show(name, (list.get(name) || {}).url);
  $("detail-title").focus({ preventScroll: false });
}
window.addEventListener("hashchange", route);

function renderDetail() {
  const name = state.selected;
  const w = list.get(name);
  $("detail-title").textContent = name;
  $("detail-title").tabIndex = -1;
  const badge = $("detail-status");
  if (!w) {
    badge.textContent = "removed";
    badge.dataset.status = "removed";
    $("detail-activity").textContent = "";
    $("detail-meta").textContent = "This workspace is gone from the storage.";
    $("detail-error").textContent = "";
    for (const b of document.querySelectorAll("[data-action]")) b.disabled = true;
    $("delete-open").disabled = true;
    return;
  }
  const status = w.frozen && w.status === "running" ? "frozen" : w.status || "unknown";
  badge.textContent = status + (w.phase ? ` (${w.phase})` : "");
  badge.dataset.status = status;
  $("detail-activity").textContent = w.activity ? "activity: " + w.activity : "";
  const meta = [w.type + (w.matched ? " — " + w.matched : ""), w.description, w.reason]
    .filter(Boolean)
    .join(" · ");
  $("detail-meta").textContent = meta;
  $("detail-error").textContent = w.status === "failed" ? w.error || "" : "";
  $("detail-open").href = w.url || (name === "www" ? "/" : "/" + encodeURIComponent(name) + "/");
  $("detail-open").setAttribute("aria-label", `Open ${name} in a new tab`);
  const running = ["running", "initializing", "creating"].includes(w.status) && !w.frozen;
  const pending = state.pending === name;
  document.querySelector('[data-action="start"]').disabled = pending || running;
  document.querySelector('[data-action="stop"]').disabled = pending || w.status === "stopped";
  document.querySelector('[data-action="restart"]').disabled = pending;
  $("delete-open").disabled = pending;
  $("delete-open").setAttribute("aria-label", `Delete ${name}…`);
  renderPreviews(w);
}

// ---- git: the branch a workspace follows, its previews, pull & push ------------------------

function shortHead(h) {
  return h ? h.slice(0, 8) : "no commit yet";
}

function renderGit(name, g) {
  const box = $("detail-git");
  if (state.selected !== name) return;
  box.hidden = !g;
  if (!g) return;
  const parts = [`git: ${g.branch || "(detached)"} @ ${shortHead(g.head)}`];
  if (g.ahead || g.behind) parts.push(`${g.ahead} ahead, ${g.behind} behind`);
  if (g.dirty) parts.push("uncommitted changes");
  if (g.sync === "conflict") {
    parts.push(`conflict: your edits are kept on the branch ${g.conflict_branch}; merge it on the remote`);
  } else if (g.sync !== "ok") {
    parts.push(g.sync);
  }
  if (g.error) parts.push(g.error);
  parts.push(g.url);
  $("git-summary").textContent = parts.join(" · ");
  box.dataset.sync = g.sync;
}

async function loadGit(name) {
  try {
    const st = await api.workspaceStatus(name);
    renderGit(name, st.git || null);
  } catch (e) {
    if (state.selected === name) $("detail-git").hidden = true;
  }
}

function renderPreviews(w) {
  const p = $("detail-previews");
  p.textContent = "";
  const link = (n, text) => {
    const a = document.createElement("a");
    a.href = "#/w/" + encodeURIComponent(n);
    a.textContent = text;
    return a;
  };
  if (w.preview_of) {
    p.append(`Preview of the branch ${w.branch} of `, link(w.preview_of, w.preview_of));
  } else if (w.previews && w.previews.length) {
    p.append("Branch previews: ");
    w.previews.forEach((v, i) => {
      if (i) p.append(", ");
      p.append(link(v.name, `${v.branch} (${v.name})`));
    });
  }
  p.hidden = !p.textContent;
}

$("git-sync").addEventListener("click", async () => {
  const name = state.selected;
  if (!name) return;
  const button = $("git-sync");
  button.disabled = true;
  $("action-result").textContent = `Pulling ${name}…`;
  try {
    const r = await api.sync(name);
    const g = r.git || {};
    $("action-result").textContent = g.updated
      ? `${name}: pulled ${g.changed} changed file(s), now at ${shortHead(g.head)}`
      : `${name}: already up to date`;
  } catch (e) {
    handleApiError(e, `Pulling ${name} failed`);
  } finally {
    button.disabled = false;
    loadGit(name);
  }
});

for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", async () => {
    const name = state.selected;
    const verb = button.dataset.action;
    if (!name) return;
    state.pending = name;
    renderDetail();
    $("action-result").textContent = `${verb} ${name}…`;
    try {
      await api.action(name, verb);
      $("action-result").textContent = `${verb} ${name}: requested`;
    } catch (e) {
      handleApiError(e, `${verb} ${name} failed`);
    } finally {
      state.pending = "";
      renderDetail();
    }
  });
}

// ---- deleting: a modal <dialog> (Escape or Cancel keep the workspace) ------------------------

const deleteDialog = $("delete-dialog");
let deleting = "";

$("delete-open").addEventListener("click", () => {
  deleting = state.selected;
  if (!deleting) return;
  $("delete-title").textContent = `Delete ${deleting}?`;
  $("delete-confirm").textContent = `Delete ${deleting}`;
  deleteDialog.returnValue = "";
  deleteDialog.showModal();
  $("delete-cancel").focus();
});

deleteDialog.addEventListener("close", () => {
  const name = deleting;
  deleting = "";
  if (deleteDialog.returnValue === "delete" && name) {
    deleteWorkspace(name);
  } else if (!$("detail").hidden) {
    $("delete-open").focus();
    $("action-result").textContent = `Kept ${name}: nothing was deleted.`;
  }
});

async function deleteWorkspace(name) {
  state.pending = name;
  renderDetail();
  $("action-result").textContent = `Deleting ${name}…`;
  try {
    const r = await api.deleteWorkspace(name);
    if (state.selected === name) location.hash = "#/";
    $("ws-result").textContent =
      `Deleted ${name}: its folder is now ${r && r.trash ? r.trash : "in the trash"} (move it back ` +
      `into the workspaces folder to restore it). Its row goes once its app has stopped.`;
    $("ws-title").focus();
    announce(`Deleted ${name}`);
  } catch (e) {
    handleApiError(e, `Delete ${name} failed`);
    if (state.selected === name) $("delete-open").focus();
  } finally {
    state.pending = "";
    if (state.selected) renderDetail();
  }
}

// Accepts the log shapes a server may answer: {"lines": [...]}, {"log": "text"}, an array.
function linesOf(r) {
  if (Array.isArray(r)) return r.map((l) => (typeof l === "string" ? l : l.line ?? JSON.stringify(l)));
  if (r && Array.isArray(r.lines)) return linesOf(r.lines);
  if (r && typeof r.log === "string") return r.log.split("\n").filter((l, i, a) => l || i < a.length - 1);
  return [];
}

async function loadLogs(name) {
  const token = ++state.logsLoading;
  logs.reset();
  logs.message("loading the log…");
  try {
    const r = await api.logs(name, 500);
    if (token !== state.logsLoading) return;
    logs.reset(linesOf(r));
  } catch (e) {
    if (token !== state.logsLoading || handleApiError(e)) return;
    // Without the logs endpoint: the last lines the monitor kept, then live lines.
    const w = list.get(name);
    const tail = w && w.log_tail ? String(w.log_tail).split("\n").filter(Boolean) : [];
    logs.reset(tail);
    logs.message(`log history unavailable (${e.message}); showing live lines`);
  }
}

// ---- tabs ----------------------------------------------------------------------------------

const tabs = [$("tab-logs"), $("tab-preview"), $("tab-run")];
function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  clearInterval(state.heartbeatTimer);
  if (tab === tabs[1] && state.selected) {
    preview.show(state.selected, (list.get(state.selected) || {}).url);
    // Someone is looking at the preview: keep the workspace active.
    const beat = () => state.stream && state.stream.send({ heartbeat: [state.selected] });
    beat();
    state.heartbeatTimer = setInterval(beat, 30000);
  }
}
for (const t of tabs) {
  t.addEventListener("click", () => selectTab(t));
  t.addEventListener("keydown", (ev) => {
    const i = tabs.indexOf(t);
    let next = null;
    if (ev.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
    if (ev.key === "ArrowLeft") next = tabs[(i + tabs.length - 1) % tabs.length];
    if (ev.key === "Home") next = tabs[0];
    if (ev.key === "End") next = tabs[tabs.length - 1];
    if (next) {
      ev.preventDefault();
      selectTab(next);
      next.focus();
    }
  });
}

boot();
