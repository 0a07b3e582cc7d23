// Browser tests of the dashboard at /monitor/: Debian's Chromium driven by playwright-core
// (never a downloaded browser). Run by tests/integration/test_browser.py, which starts the
// daemon and passes, in the environment:
//   CK_URL          http://127.0.0.1:PORT
//   CK_USER, CK_PASSWORD   a dashboard user (CK_AUTH=0 and CK_AUTH_REASON when the daemon
//                   has no auth endpoints: the sign-in test is then reported as skipped)
//   CK_CONTROL      the wrapper's control URL: POST /restart, POST /add?name=N&from=site
//   CK_SCREENSHOTS  the folder for screenshots (one per test)
//   CK_PLAYWRIGHT   the playwright-core package folder
//   CK_CHROMIUM     the browser (default /usr/bin/chromium)
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";

const env = (k, d) => process.env[k] ?? d;
const BASE = env("CK_URL");
const CONTROL = env("CK_CONTROL");
const SHOTS = env("CK_SCREENSHOTS", path.resolve("screenshots"));
const AUTH = env("CK_AUTH", "1") === "1";
const CHROMIUM = env("CK_CHROMIUM", "/usr/bin/chromium");
assert.ok(BASE, "CK_URL is not set (run this through tests/integration/test_browser.py)");
assert.ok(CONTROL, "CK_CONTROL is not set (run this through tests/integration/test_browser.py)");

const require = createRequire(import.meta.url);
const { chromium } = require(env("CK_PLAYWRIGHT", "playwright-core"));

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
];

let browser;
let context;
let page;
const problems = []; // console errors and CSP violations, checked by the last test

fs.mkdirSync(SHOTS, { recursive: true });

// Polls `check` every 100 ms until it returns true; fails with `what` after `timeout` ms.
async function waitFor(check, timeout, what) {
  const deadline = Date.now() + timeout;
  for (let i = 0; i < 100000; i++) {
    if (await check()) return;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`timed out after ${timeout} ms waiting for ${what}`);
}

// The API's view of one workspace.
async function workspace(name) {
  return (await page.request.get(`${BASE}/monitor/api/v1/workspaces/${name}`)).json();
}

// Waits until the gateway answers `path` with a status below 500 (a workspace that is starting
// answers 503 + Retry-After).
async function answers(path, timeout = 30000) {
  await waitFor(async () => (await page.request.get(BASE + path)).status() < 500, timeout, `${path} to answer`);
}

async function shot(name) {
  const file = path.join(SHOTS, name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  console.log(`# screenshot: ${file}`);
}

async function control(what, params = {}) {
  const url = new URL(CONTROL + "/" + what);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const r = await fetch(url, { method: "POST" });
  const text = await r.text();
  assert.equal(r.status, 200, `control ${what}: ${text}`);
  return text;
}

const row = (name) => page.locator(`#ws-list li[data-workspace="${name}"]`);
const status = (name) => row(name).locator(".ws-status");

async function select(name) {
  await row(name).locator("a.ws-name").click();
  await page.locator("#detail-title").filter({ hasText: name }).waitFor();
}

// A marker on window that a reload would wipe: proves an update arrived live.
async function markPage() {
  await page.evaluate(() => (window.__ckNoReload = true));
}
async function assertNotReloaded() {
  assert.equal(await page.evaluate(() => window.__ckNoReload === true), true, "the page was reloaded");
}

before(async () => {
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30000 });
  } catch (e) {
    throw new Error(`Chromium did not start (${CHROMIUM}): ${e.message}`);
  }
  context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (m) => {
    if (m.type() === "error") problems.push("console: " + m.text());
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
});

after(async () => {
  if (browser) await browser.close();
});

test("the dashboard is served with its security headers", async () => {
  const r = await fetch(BASE + "/monitor/");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/html/);
  assert.equal(r.headers.get("cache-control"), "no-cache");
  const csp = r.headers.get("content-security-policy");
  for (const d of ["default-src 'self'", "connect-src 'self' ws: wss:", "frame-src 'self'",
                   "img-src 'self' data:", "style-src 'self'", "script-src 'self'"]) {
    assert.ok(csp.includes(d), `CSP lacks ${d}: ${csp}`);
  }
  const js = await fetch(BASE + "/monitor/assets/app.js");
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type"), /^text\/javascript/);
  const etag = js.headers.get("etag");
  assert.ok(etag, "no ETag on app.js");
  const again = await fetch(BASE + "/monitor/assets/app.js", { headers: { "If-None-Match": etag } });
  assert.equal(again.status, 304);
});

test("log in", async (t) => {
  await page.goto(BASE + "/monitor/");
  if (!AUTH) {
    await page.locator("#main").waitFor();
    await shot("01-no-login");
    t.skip("no sign-in: " + env("CK_AUTH_REASON", "the daemon has no auth endpoints"));
    return;
  }
  await page.getByLabel("Name").waitFor();
  await shot("01-login-form");
  // A wrong password is refused with a message, and the form stays.
  await page.getByLabel("Name").fill(env("CK_USER"));
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#login-error").filter({ hasText: /wrong|invalid|incorrect/i }).waitFor();
  await page.getByLabel("Password").fill(env("CK_PASSWORD"));
  await page.getByLabel("Password").press("Enter");
  await page.locator("#main").waitFor();
  await page.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
  // The session survives a reload.
  await page.reload();
  await page.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
  await shot("01-logged-in");
});

test("the list shows every workspace, and a new one appears and runs without a reload", async () => {
  const api = await (await page.request.get(BASE + "/monitor/api/v1/workspaces")).json();
  const names = api.workspaces.map((w) => w.name).sort();
  assert.ok(names.length >= 2, "the daemon should serve the examples");
  await page.locator("#conn[data-state=open]").waitFor();
  for (const n of names) await row(n).waitFor();
  assert.deepEqual(
    (await page.locator("#ws-list li").evaluateAll((els) => els.map((e) => e.dataset.workspace))).sort(),
    names,
  );
  await status("hello-python").filter({ hasText: "running" }).waitFor({ timeout: 30000 });
  await markPage();
  await control("add", { name: "late-site", from: "site" });
  await row("late-site").waitFor();
  await status("late-site").filter({ hasText: "running" }).waitFor({ timeout: 20000 });
  await assertNotReloaded();
  await shot("02-list-live");
});

test("stop and start a workspace with the buttons; the status changes live", async (t) => {
  if (!AUTH) {
    t.skip("start/stop need the auth endpoints (X-CSRF-Token from the session)");
    return;
  }
  await markPage();
  await select("hello-python");
  const stop = page.getByRole("button", { name: "Stop", exact: true });
  const start = page.getByRole("button", { name: "Start", exact: true });
  await stop.click();
  await status("hello-python").filter({ hasText: "stopped" }).waitFor({ timeout: 20000 });
  await page.locator("#detail-status").filter({ hasText: "stopped" }).waitFor();
  await shot("03-stopped");
  await start.click();
  await status("hello-python").filter({ hasText: "running" }).waitFor({ timeout: 30000 });
  await page.locator("#detail-status").filter({ hasText: "running" }).waitFor();
  // Restart goes through stopping/initializing and ends running again, on a new process.
  const pidBefore = (await workspace("hello-python")).pid;
  await page.getByRole("button", { name: "Restart", exact: true }).click();
  await page.locator("#action-result").filter({ hasText: /restart hello-python: requested/ }).waitFor();
  await waitFor(async () => {
    const w = await workspace("hello-python");
    return w.status === "running" && w.pid !== pidBefore;
  }, 30000, "hello-python running on a new process after the restart");
  await status("hello-python").filter({ hasText: "running" }).waitFor({ timeout: 30000 });
  await answers("/hello-python/");
  await assertNotReloaded();
  await shot("03-started");
});

test("read a workspace's logs, live, with search and follow", async () => {
  await select("hello-python");
  await page.getByRole("tab", { name: "Logs" }).click();
  await page.locator("#log-note").filter({ hasText: /lines|unavailable/ }).waitFor();
  // A request to the app writes an access-log line, which arrives as a live `log` event.
  const marker = "ck-browser-" + Date.now();
  await answers("/hello-python/");
  const r = await page.request.get(`${BASE}/hello-python/${marker}`);
  assert.ok(r.status() < 500, `hello-python answered ${r.status()}`);
  await page.locator("#log .line").filter({ hasText: marker }).waitFor({ timeout: 15000 });
  // Search filters the lines.
  await page.getByLabel("Search the log").fill(marker);
  const shown = await page.locator("#log .line:visible").allTextContents();
  assert.ok(shown.length >= 1 && shown.every((l) => l.includes(marker)), JSON.stringify(shown));
  await page.locator("#log-note").filter({ hasText: "match" }).waitFor();
  await shot("04-logs");
  await page.getByLabel("Search the log").fill("");
  const follow = page.getByLabel("Follow");
  assert.equal(await follow.isChecked(), true);
  await follow.uncheck();
  assert.equal(await follow.isChecked(), false);
  await follow.check();
});

test("preview a workspace at desktop, tablet and mobile sizes", async () => {
  await select("hello-python");
  await page.getByRole("tab", { name: "Preview" }).click();
  const frame = page.locator("#preview");
  assert.equal(await frame.getAttribute("sandbox"), "allow-scripts allow-forms allow-same-origin");
  await page.frameLocator("#preview").locator("body").filter({ hasText: "hello-python" }).waitFor({ timeout: 20000 });
  const sizes = { Desktop: [1280, 800], Tablet: [768, 1024], Mobile: [375, 667] };
  for (const [label, [w, h]] of Object.entries(sizes)) {
    await page.getByLabel(label).check();
    const box = await frame.evaluate((e) => ({ w: e.offsetWidth, h: e.offsetHeight }));
    // The iframe has a 1 px border on each side.
    assert.equal(box.w, w + 2, `${label} width`);
    assert.equal(box.h, h + 2, `${label} height`);
    const inner = await page.frameLocator("#preview").locator("html").evaluate(() => innerWidth);
    assert.equal(inner, w, `${label}: the page inside sees its viewport width`);
    await shot(`05-preview-${label.toLowerCase()}`);
  }
  // Reload loads the page again (a fresh document has no marker).
  await page.frameLocator("#preview").locator("html").evaluate(() => (window.__mark = 1));
  await page.getByRole("button", { name: "Reload preview" }).click();
  await page.waitForFunction(() => {
    const f = document.getElementById("preview");
    return f.contentWindow && f.contentWindow.__mark === undefined &&
      f.contentDocument && f.contentDocument.readyState === "complete" &&
      f.contentDocument.body && f.contentDocument.body.textContent.includes("hello-python");
  });
  await page.getByRole("tab", { name: "Logs" }).click();
});

test("system health shows workspaces, jobs and memory", async () => {
  await page.getByRole("button", { name: "Refresh" }).click();
  for (const k of ["Workspaces", "Jobs", "Memory (RSS)", "Runtime"]) {
    await page.locator(`#health dd[data-fact="${k}"]`).waitFor();
  }
  const rss = await page.locator('#health dd[data-fact="Memory (RSS)"]').textContent();
  assert.match(rss, /^\d+(\.\d)? MiB$/);
  await shot("06-health");
});

test("the WebSocket reconnects by itself after the daemon restarts", async () => {
  await markPage();
  await page.locator("#conn[data-state=open]").waitFor();
  const restarted = control("restart");
  await page.locator("#banner").filter({ hasText: /reconnecting/i }).waitFor({ timeout: 15000 });
  await page.locator("#conn[data-state=down]").waitFor();
  await shot("07-reconnecting");
  await restarted;
  await page.locator("#conn[data-state=open]").waitFor({ timeout: 20000 });
  await page.locator("#banner").waitFor({ state: "hidden" });
  // The new socket carries events: a workspace added now appears without a reload.
  await control("add", { name: "after-restart", from: "site" });
  await status("after-restart").filter({ hasText: "running" }).waitFor({ timeout: 20000 });
  await assertNotReloaded();
  await shot("07-reconnected");
});

test("keyboard and phone: operable by keys at 375 px without sideways scrolling", async () => {
  await page.setViewportSize({ width: 375, height: 740 });
  await page.goto(BASE + "/monitor/#/");
  await page.locator("#conn[data-state=open]").waitFor();
  await row("site").waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`);
  // Tab reaches the workspace links; Enter opens one; the tabs answer the arrow keys.
  let reached = false;
  for (let i = 0; i < 20 && !reached; ++i) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => document.activeElement?.closest("#ws-list") !== null);
  }
  assert.ok(reached, "Tab never reached the workspace list");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none", "focus is not visible");
  const name = await page.evaluate(() => document.activeElement.closest("li").dataset.workspace);
  await page.keyboard.press("Enter");
  await page.locator("#detail-title").filter({ hasText: name }).waitFor();
  await page.getByRole("tab", { name: "Logs" }).focus();
  await page.keyboard.press("ArrowRight");
  assert.equal(await page.getByRole("tab", { name: "Preview" }).getAttribute("aria-selected"), "true");
  await page.keyboard.press("ArrowLeft");
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, button, select, textarea")]
      .filter((e) => e.offsetParent !== null)
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim())
      .map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, [], "controls without a label");
  assert.ok(await page.locator("[aria-live]").count() >= 2, "no aria-live regions");
  await shot("08-phone");
});

test("no script errors or CSP violations on the way", async () => {
  // Expected on the way: 401 before sign-in and for the wrong password, and refused
  // connections while the daemon restarts.
  // Without the auth endpoints (CK_AUTH=0), /auth/me and the logs endpoint answer 404.
  const expected = AUTH
    ? /status of 401|ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/
    : /status of 40[14]|ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/;
  const bad = problems.filter((p) => !expected.test(p));
  assert.deepEqual(bad, []);
});
