// Browser tests of the dashboard at /monitor/: Debian's Chromium driven by playwright-core
// (never a downloaded browser). Run by tests/integration/test_browser.py, which starts the
// daemon and passes, in the environment:
//   CK_URL          http://127.0.0.1:PORT
//   CK_USER, CK_PASSWORD   a dashboard user (CK_AUTH=0 and CK_AUTH_REASON when the daemon
//                   has no auth endpoints: the sign-in test is then reported as skipped)
//   CK_CONTROL      the wrapper's control URL: POST /restart, POST /add?name=N&from=site
//   CK_SCREENSHOTS  the folder for screenshots (one per test)
//   CK_DOMAIN       the daemon's gateway.domain (workspaces at http://<name>.<domain>:PORT/)
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
const DOMAIN = env("CK_DOMAIN", "");
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
  // Nothing resolves but 127.0.0.1 and, with a domain, its workspace hosts (the first rule that
  // matches applies).
  `--host-resolver-rules=${DOMAIN ? `MAP *.${DOMAIN} 127.0.0.1 , MAP ${DOMAIN} 127.0.0.1 , ` : ""}` +
    "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
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

async function shot(name, on = page) {
  const file = path.join(SHOTS, name + ".png");
  await on.screenshot({ path: file, fullPage: true });
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

const createForm = () => page.locator("#create-form");

// Opens the "new workspace" form (if closed) and waits for its templates.
async function openCreateForm() {
  if (await createForm().isHidden()) await page.getByRole("button", { name: "New workspace" }).click();
  await createForm().waitFor();
  await waitFor(async () => (await page.locator("#create-template option").count()) > 0, 10000,
    "the template picker to fill from GET /templates");
}

// Every POST /monitor/api/v1/workspaces the page sends, with its JSON body.
function recordCreates() {
  const sent = [];
  const listener = (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname === "/monitor/api/v1/workspaces") {
      sent.push(r.postDataJSON());
    }
  };
  page.on("request", listener);
  return { sent, stop: () => page.off("request", listener) };
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
    if (m.type() === "error") problems.push(`console: ${m.text()} (${m.location().url || "no url"})`);
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
  const form = page.locator("#login-form");
  await form.getByLabel("Name").waitFor();
  await shot("01-login-form");
  // A wrong password is refused with a message, and the form stays.
  await form.getByLabel("Name").fill(env("CK_USER"));
  await form.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#login-error").filter({ hasText: /wrong|invalid|incorrect/i }).waitFor();
  await form.getByLabel("Password").fill(env("CK_PASSWORD"));
  await form.getByLabel("Password").press("Enter");
  await page.locator("#main").waitFor();
  await page.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
  // The session survives a reload.
  await page.reload();
  await page.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
  await shot("01-logged-in");
});

test("?next= follows paths on this origin only, before and after signing in", async (t) => {
  if (!AUTH) {
    t.skip("?next= is followed after signing in, which needs the auth endpoints");
    return;
  }
  // Each of these would leave the site if followed (the tab is dropped by the URL parser,
  // making "//evil.example"); the dashboard must stay on /monitor/.
  const attacks = ["/\t/evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)",
                   "http://evil.example/", "/%2F/evil.example", " /evil"];
  const origin = new URL(BASE).origin;
  const stays = async (p, what) => {
    // The caller waited for the signed-in page; a followed `next` would have replaced it.
    await p.waitForLoadState("load");
    const u = new URL(p.url());
    assert.equal(u.origin, origin, `${what}: left for ${p.url()}`);
    assert.equal(u.pathname, "/monitor/", `${what}: went to ${p.url()}`);
  };
  // Signed in already (the session of the previous test): boot() would follow next at once.
  for (const a of attacks) {
    await page.goto(BASE + "/monitor/?next=" + encodeURIComponent(a));
    await page.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
    await stays(page, JSON.stringify(a));
  }
  // The raw query form of row 11 of the issue, exactly as an attacker links it.
  await page.goto(BASE + "/monitor/?next=/%09/evil.example");
  await page.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
  await stays(page, "/%09/evil.example");
  // Signing in with it: the form, then /monitor/ still.
  const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const p = await other.newPage();
    for (const a of ["/%09/evil.example", "//evil.example"]) {
      await p.goto(BASE + "/monitor/?next=" + a);
      const form = p.locator("#login-form");
      await form.getByLabel("Name").waitFor();
      await form.getByLabel("Name").fill(env("CK_USER"));
      await form.getByLabel("Password").fill(env("CK_PASSWORD"));
      await form.getByLabel("Password").press("Enter");
      await p.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
      await stays(p, a + " after signing in");
      await other.clearCookies();
    }
  } finally {
    await other.close();
  }
  await page.goto(BASE + "/monitor/");
  await page.locator("#who").filter({ hasText: env("CK_USER") }).waitFor();
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
  // The workspace's page must not share the dashboard's origin: no allow-same-origin, ever
  // (with it, a page in the frame could read the session's CSRF value and ask for a token).
  const sandbox = await frame.getAttribute("sandbox");
  assert.ok(sandbox !== null, "the preview iframe has no sandbox attribute");
  assert.ok(!sandbox.split(/\s+/).includes("allow-same-origin"), `sandbox is "${sandbox}"`);
  assert.ok(sandbox.split(/\s+/).includes("allow-scripts"), `sandbox is "${sandbox}"`);
  if (DOMAIN) {
    // With gateway.domain, the preview is the workspace on its own origin, as the API says.
    const port = new URL(BASE).port;
    assert.equal(await frame.getAttribute("src"), `http://hello-python.${DOMAIN}:${port}/`);
    assert.equal((await workspace("hello-python")).url, `http://hello-python.${DOMAIN}:${port}/`);
  }
  // Without a page inside being able to reach its parent either.
  assert.equal(await page.frameLocator("#preview").locator("html").evaluate(() => {
    try {
      return String(window.parent.document.cookie);
    } catch {
      return "refused";
    }
  }).catch(() => "refused"), "refused");
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
  // The frame is on another (opaque) origin: look inside it through the driver, not the page.
  await waitFor(async () => {
    try {
      return await page.frameLocator("#preview").locator("html").evaluate(() =>
        window.__mark === undefined && document.readyState === "complete" &&
        document.body !== null && document.body.textContent.includes("hello-python"));
    } catch {
      return false;  // between two documents
    }
  }, 15000, "the preview to load the page again");
  await page.getByRole("tab", { name: "Logs" }).click();
});

test("the new-workspace form checks the name like the server, and shows the server's refusal", async (t) => {
  if (!AUTH) {
    t.skip("creating workspaces needs the auth endpoints (X-CSRF-Token from the session)");
    return;
  }
  await page.locator("#conn[data-state=open]").waitFor();
  await openCreateForm();
  const name = createForm().getByLabel("Name", { exact: true });
  assert.equal(await page.evaluate(() => document.activeElement.id), "create-name", "opening the form focuses the name");
  const creates = recordCreates();
  // What src/core/names.cc refuses is refused here, with the reason, before anything is sent.
  const refused = {
    "My-Site": /uppercase letters/,
    "-site": /start with a lowercase letter or a digit/,
    "my_site": /contains '_'/,
    ["a".repeat(64)]: /longer than 63 characters/,
    monitor: /reserved/,
    "": /Enter a name/,
  };
  for (const [bad, why] of Object.entries(refused)) {
    await name.fill(bad);
    await createForm().getByRole("button", { name: "Create workspace" }).click();
    await page.locator("#create-name-error").filter({ hasText: why }).waitFor();
    assert.equal(await name.getAttribute("aria-invalid"), "true", `${JSON.stringify(bad)} is marked invalid`);
    assert.equal(await page.evaluate(() => document.activeElement.id), "create-name");
  }
  assert.deepEqual(creates.sent, [], "an invalid name was sent to the server");
  // Fixing the name clears the message as you type.
  await name.fill("site");
  await page.locator("#create-name-error").filter({ hasText: /./ }).waitFor({ state: "hidden" });
  // A valid name that exists: the server refuses, and its message is shown.
  await createForm().getByRole("button", { name: "Create workspace" }).click();
  await page.locator("#create-error").filter({ hasText: "a workspace named 'site' already exists" }).waitFor();
  await page.locator("#create-error").filter({ hasText: "Choose another name" }).waitFor();
  assert.equal(await page.locator("#create-error").getAttribute("role"), "alert");
  assert.equal(creates.sent.length, 1);
  assert.equal(creates.sent[0].name, "site");
  creates.stop();
  await shot("09-create-refused");
});

test("create a workspace from a template; it reaches running live, without a reload", async (t) => {
  if (!AUTH) {
    t.skip("creating workspaces needs the auth endpoints (X-CSRF-Token from the session)");
    return;
  }
  await markPage();
  await openCreateForm();
  const templates = await page.locator("#create-template option").evaluateAll((os) => os.map((o) => o.value));
  const api = await (await page.request.get(BASE + "/monitor/api/v1/templates")).json();
  assert.deepEqual(templates, api.templates.map((x) => x.name), "the picker lists GET /templates");
  assert.ok(templates.includes("python-http"), JSON.stringify(templates));
  const creates = recordCreates();
  await createForm().getByLabel("A template").check();
  await createForm().getByLabel("Template", { exact: true }).selectOption("python-http");
  await createForm().getByLabel("Name", { exact: true }).fill("from-template");
  await createForm().getByLabel("Name", { exact: true }).press("Enter");
  await page.locator("#ws-result").filter({ hasText: "Created from-template from the template python-http" }).waitFor();
  creates.stop();
  assert.deepEqual(creates.sent, [{ name: "from-template", template: "python-http" }]);
  // The row appears at once and follows the live status events to running (a Python process).
  await row("from-template").waitFor();
  await status("from-template").filter({ hasText: "running" }).waitFor({ timeout: 60000 });
  const w = await workspace("from-template");
  assert.equal(w.status, "running");
  assert.equal(w.type, "python");
  await answers("/from-template/");
  await assertNotReloaded();
  await shot("10-created-from-template");
});

test("clone an existing workspace as a private copy; it appears live", async (t) => {
  if (!AUTH) {
    t.skip("creating workspaces needs the auth endpoints (X-CSRF-Token from the session)");
    return;
  }
  await markPage();
  await openCreateForm();
  // The picker follows the list: the workspace made by the previous test is there.
  const clones = await page.locator("#create-clone option").evaluateAll((os) => os.map((o) => o.value));
  assert.ok(clones.includes("site") && clones.includes("from-template"), JSON.stringify(clones));
  const creates = recordCreates();
  await createForm().getByLabel("A copy of a workspace").check();
  assert.equal(await page.locator("#create-template").isDisabled(), true);
  await createForm().getByLabel("Workspace to copy").selectOption("site");
  await createForm().getByLabel("Private").check();
  await createForm().getByLabel("Name", { exact: true }).fill("site-copy");
  await createForm().getByRole("button", { name: "Create workspace" }).click();
  await page.locator("#ws-result").filter({ hasText: "Created site-copy as a copy of site (private)" }).waitFor();
  creates.stop();
  assert.deepEqual(creates.sent, [{ name: "site-copy", clone_of: "site", public: false }]);
  await status("site-copy").filter({ hasText: "running" }).waitFor({ timeout: 30000 });
  const w = await workspace("site-copy");
  assert.equal(w.type, "static");
  assert.equal(w.public, false);
  // The copy serves the same page as the original, to its signed-in owner only.
  const [a, b] = await Promise.all(["/site/", "/site-copy/"].map(async (p) => (await page.request.get(BASE + p)).text()));
  assert.equal(b, a);
  const anonymous = await fetch(BASE + "/site-copy/", { redirect: "manual" });
  assert.notEqual(anonymous.status, 200, "a private workspace answered a request without a session");
  await assertNotReloaded();
  await createForm().getByRole("button", { name: "Close" }).click();
  assert.equal(await createForm().isHidden(), true);
  assert.equal(await page.getByRole("button", { name: "New workspace" }).getAttribute("aria-expanded"), "false");
  await shot("11-cloned");
});

test("a private workspace sends a browser without a session to the login, and back after it", async (t) => {
  if (!AUTH) {
    t.skip("private workspaces need the auth endpoints");
    return;
  }
  // A second browser context: no cookies, like someone opening a shared link.
  const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const p = await other.newPage();
    await p.goto(BASE + "/site-copy/");
    assert.equal(new URL(p.url()).pathname, "/monitor/");
    assert.equal(new URL(p.url()).searchParams.get("next"), "/site-copy/");
    const form = p.locator("#login-form");
    await p.locator("#login-error").filter({ hasText: "/site-copy/ is a private workspace" }).waitFor();
    await shot("16-private-login", p);
    await form.getByLabel("Name").fill(env("CK_USER"));
    await form.getByLabel("Password").fill(env("CK_PASSWORD"));
    await form.getByLabel("Password").press("Enter");
    await p.waitForURL(BASE + "/site-copy/");
    const original = await (await page.request.get(BASE + "/site/")).text();
    assert.equal(await p.content().then((html) => html.length > 0), true);
    const served = await (await p.request.get(BASE + "/site-copy/")).text();
    assert.equal(served, original, "the private copy did not open after signing in");
    await shot("16-private-opened", p);
  } finally {
    await other.close();
  }
});

test("delete a workspace after confirming in a dialog; it disappears live", async (t) => {
  if (!AUTH) {
    t.skip("deleting workspaces needs the auth endpoints (X-CSRF-Token from the session)");
    return;
  }
  await markPage();
  await select("from-template");
  const open = page.getByRole("button", { name: "Delete from-template…" });
  const dialog = page.locator("#delete-dialog");
  // Escape keeps it.
  await open.click();
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "delete-cancel", "Cancel has the focus");
  await page.getByRole("dialog").filter({ hasText: "Delete from-template?" }).waitFor();
  await shot("12-delete-confirm");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  await page.locator("#action-result").filter({ hasText: "Kept from-template" }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "delete-open", "the focus is back on Delete");
  assert.equal((await workspace("from-template")).name, "from-template");
  // By keyboard: Enter opens the dialog, Tab moves to the confirm button, Enter deletes.
  await page.keyboard.press("Enter");
  await dialog.waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Delete from-template");
  await page.keyboard.press("Enter");
  await page.locator("#ws-result").filter({ hasText: /Deleted from-template: its folder is now .*trash/ }).waitFor();
  await page.locator("#detail").waitFor({ state: "hidden" });
  // The monitor stops its process and drops it: the row goes through the live events.
  await row("from-template").waitFor({ state: "detached", timeout: 30000 });
  const gone = await page.request.get(`${BASE}/monitor/api/v1/workspaces/from-template`);
  assert.equal(gone.status(), 404);
  await assertNotReloaded();
  await shot("12-deleted");
});

test("run a command in a workspace: the output streams in, then the exit code", async (t) => {
  if (!AUTH) {
    t.skip("running commands needs the auth endpoints (X-CSRF-Token from the session)");
    return;
  }
  await select("hello-python");
  await status("hello-python").filter({ hasText: "running" }).waitFor({ timeout: 30000 });
  await page.getByRole("tab", { name: "Run" }).click();
  const panel = page.locator("#panel-run");
  assert.equal(await panel.getByLabel("Timeout").inputValue(), "30s");
  // When did the first line show, and when did the exit code: a stream shows the first line
  // while the command still sleeps.
  await page.evaluate(() => {
    const out = document.getElementById("run-output");
    const res = document.getElementById("run-result");
    const seen = (window.__ckRun = {});
    const obs = new MutationObserver(() => {
      if (!seen.first && out.textContent.includes("first")) seen.first = performance.now();
      if (!seen.done && res.textContent.includes("exit code")) seen.done = performance.now();
    });
    for (const e of [out, res]) obs.observe(e, { childList: true, characterData: true, subtree: true });
  });
  await panel.getByLabel("Command", { exact: true }).fill(`sh -c 'echo first; sleep 2; echo "second line"'`);
  await panel.getByRole("button", { name: "Run", exact: true }).click();
  await page.locator("#run-result").filter({ hasText: "exit code 0" }).waitFor({ timeout: 20000 });
  assert.equal(await page.locator("#run-output").textContent(), "first\nsecond line\n");
  const seen = await page.evaluate(() => window.__ckRun);
  assert.ok(seen.first && seen.done, JSON.stringify(seen));
  assert.ok(seen.done - seen.first > 1000,
    `the first line showed ${Math.round(seen.done - seen.first)} ms before the end: not streamed`);
  // Quoting: 'single', "double" with \" inside, and a backslash-escaped blank.
  await panel.getByLabel("Command", { exact: true }).fill(`printf '%s|' 'a b' "c \\"d\\"" e\\ f`);
  await panel.getByLabel("Command", { exact: true }).press("Enter");
  await page.locator("#run-output").filter({ hasText: 'a b|c "d"|e f|' }).waitFor();
  await page.locator("#run-result").filter({ hasText: "exit code 0" }).waitFor();
  assert.equal(await page.locator("#run-output").textContent(), 'a b|c "d"|e f|');
  await shot("13-run-output");
});

test("a failing, timed-out or refused command says so", async (t) => {
  if (!AUTH) {
    t.skip("running commands needs the auth endpoints (X-CSRF-Token from the session)");
    return;
  }
  await select("hello-python");
  await page.getByRole("tab", { name: "Run" }).click();
  const panel = page.locator("#panel-run");
  const command = panel.getByLabel("Command", { exact: true });
  const timeout = panel.getByLabel("Timeout");
  const run = panel.getByRole("button", { name: "Run", exact: true });
  // A non-zero exit (stderr is part of the output).
  await command.fill(`sh -c 'echo going wrong >&2; exit 3'`);
  await run.click();
  await page.locator("#run-result").filter({ hasText: "Failed with exit code 3" }).waitFor({ timeout: 20000 });
  assert.match(await page.locator("#run-output").textContent(), /going wrong/);
  assert.equal(await page.locator("#run-output").getAttribute("data-state"), "failed");
  await shot("14-run-failed");
  // Killed at its timeout.
  await command.fill("sleep 30");
  await timeout.fill("1s");
  await run.click();
  await page.locator("#run-result").filter({ hasText: "Timed out after 1s" }).waitFor({ timeout: 20000 });
  // A timeout the server does not accept: its message.
  await timeout.fill("forever");
  await command.fill("true");
  await run.click();
  await page.locator("#run-error").filter({ hasText: '"timeout" must be a duration' }).waitFor();
  await timeout.fill("30s");
  // An unclosed quote is caught here, before anything is sent.
  const sent = [];
  const listener = (r) => r.url().includes("/run") && sent.push(r.url());
  page.on("request", listener);
  await command.fill("echo 'oops");
  await run.click();
  await page.locator("#run-error").filter({ hasText: "not closed" }).waitFor();
  assert.equal(await command.getAttribute("aria-invalid"), "true");
  page.off("request", listener);
  assert.deepEqual(sent, []);
  // A static workspace has nothing to run a command in: the server's 409 message.
  await select("site");
  assert.equal(await page.locator("#run-output").textContent(), "", "another workspace starts with an empty box");
  await command.fill("ls");
  await run.click();
  await page.locator("#run-error").filter({ hasText: "'site' is a static workspace" }).waitFor();
  await shot("14-run-refused");
  await page.getByRole("tab", { name: "Logs" }).click();
});

test("a git workspace shows its branch and head, and pulls a new commit with a click", async (t) => {
  if (!AUTH) {
    t.skip("needs a signed-in user to sync");
    return;
  }
  const first = await control("git", { name: "gitsite" });
  await row("gitsite").waitFor({ timeout: 20000 });
  await select("gitsite");
  const summary = page.locator("#git-summary");
  await summary.filter({ hasText: `git: main @ ${first.slice(0, 8)}` }).waitFor({ timeout: 15000 });
  const second = await control("git", { name: "gitsite", text: "second" });
  await page.locator("#git-sync").click();
  await page.locator("#action-result").filter({ hasText: "pulled 1 changed file(s)" }).waitFor({ timeout: 15000 });
  await summary.filter({ hasText: `@ ${second.slice(0, 8)}` }).waitFor({ timeout: 15000 });
  await answers("/gitsite/", 15000);
  const text = await (await page.request.get(BASE + "/gitsite/")).text();
  assert.match(text, /second/);
  await shot("git-sync");
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
  // Every visible control has a name: a <label>, aria-label, or (a button) its text.
  const unlabelled = () => page.evaluate(() =>
    [...document.querySelectorAll("input, button, select, textarea")]
      .filter((e) => e.offsetParent !== null)
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") &&
        !(e.tagName === "BUTTON" && e.textContent.trim()))
      .map((e) => e.outerHTML));
  const sideways = () => page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.deepEqual(await unlabelled(), [], "controls without a label");
  assert.ok(await page.locator("[aria-live]").count() >= 2, "no aria-live regions");
  await shot("08-phone");
  // The new-workspace form and the run box fit too, by keys: Enter opens the form on its name,
  // Escape closes it and gives the focus back.
  const toggle = page.getByRole("button", { name: "New workspace" });
  await toggle.focus();
  await page.keyboard.press("Enter");
  await createForm().waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "create-name");
  await page.getByRole("tab", { name: "Logs" }).focus();
  await page.keyboard.press("End");
  assert.equal(await page.getByRole("tab", { name: "Run" }).getAttribute("aria-selected"), "true");
  await page.locator("#panel-run").waitFor();
  assert.ok((await sideways()) <= 0, `with the form and the run box open the page is ${await sideways()} px too wide`);
  assert.deepEqual(await unlabelled(), [], "controls without a label (form and run box open)");
  assert.ok(await page.locator("[aria-live], [role=alert], [role=status]").count() >= 6, "results are not live regions");
  await shot("08-phone-forms");
  await page.locator("#create-name").focus();
  await page.keyboard.press("Escape");
  await createForm().waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.id), "create-toggle");
  // The delete dialog fits, and Escape keeps the workspace.
  await page.locator("#delete-open").focus();
  await page.keyboard.press("Enter");
  await page.locator("#delete-dialog").waitFor();
  const box = await page.locator("#delete-dialog").boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 375, `the dialog is off the phone: ${JSON.stringify(box)}`);
  await shot("08-phone-dialog");
  await page.keyboard.press("Escape");
  await page.locator("#delete-dialog").waitFor({ state: "hidden" });
  await row(name).waitFor();
  await page.getByRole("tab", { name: "Logs" }).click();
});

test("the list follows the `next` cursor past 100 workspaces", async () => {
  // 100 more static workspaces: more than one page of GET /workspaces (100 a page).
  const names = Array.from({ length: 100 }, (_, i) => "bulk-" + String(i).padStart(3, "0"));
  for (let i = 0; i < names.length; i += 10) {
    await Promise.all(names.slice(i, i + 10).map((n) => control("add", { name: n, from: "site" })));
  }
  // What the API lists, page by page.
  const listAll = async () => {
    const all = [];
    let after = "";
    for (;;) {
      const r = await (await page.request.get(
        `${BASE}/monitor/api/v1/workspaces?limit=100${after ? "&after=" + after : ""}`)).json();
      all.push(...r.workspaces.map((w) => w.name));
      if (!r.next) return all;
      after = r.next;
    }
  };
  let all = [];
  await waitFor(async () => {
    all = await listAll();
    return names.every((n) => all.includes(n));
  }, 30000, "the monitor to list the 100 new workspaces");
  assert.ok(all.length > 100, `${all.length} workspaces`);
  // A page whose WebSocket is mocked (no hello, no events): its list comes from REST alone.
  const p2 = await context.newPage();
  try {
    await p2.routeWebSocket(/\/monitor\/ws$/, () => {});
    const lists = [];
    p2.on("request", (r) => {
      const u = new URL(r.url());
      if (u.pathname === "/monitor/api/v1/workspaces" && r.method() === "GET") lists.push(u.search);
    });
    await p2.goto(BASE + "/monitor/");
    await p2.locator(`#ws-list li[data-workspace="${all[all.length - 1]}"]`).waitFor();
    await waitFor(async () => (await p2.locator("#ws-list li").count()) === all.length, 10000,
      `${all.length} rows`);
    assert.deepEqual(
      (await p2.locator("#ws-list li").evaluateAll((els) => els.map((e) => e.dataset.workspace))).sort(),
      [...all].sort());
    await p2.locator("#ws-count").filter({ hasText: `${all.length} workspaces` }).waitFor();
    assert.ok(lists.some((q) => /[?&]after=/.test(q)), `no request followed the cursor: ${JSON.stringify(lists)}`);
    await shot("15-paged-list", p2);
  } finally {
    await p2.close();
  }
});

test("no script errors or CSP violations on the way", async () => {
  // Expected on the way: 401 before sign-in and for the wrong password, and refused
  // connections while the daemon restarts.
  // Without the auth endpoints (CK_AUTH=0), /auth/me and the logs endpoint answer 404.
  // Refusals the tests ask for: creating a workspace that exists, running a command in a static
  // workspace (409) and a timeout the server does not accept (400).
  const refusals = [
    /status of 409 .*\/monitor\/api\/v1\/workspaces\)$/,
    /status of 409 .*\/monitor\/api\/v1\/workspaces\/site\/run\?stream=1\)$/,
    /status of 400 .*\/monitor\/api\/v1\/workspaces\/hello-python\/run\?stream=1\)$/,
  ];
  const expected = AUTH
    ? /status of 401|ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/
    : /status of 40[14]|ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/;
  const bad = problems.filter((p) => !expected.test(p) && !(AUTH && refusals.some((r) => r.test(p))));
  assert.deepEqual(bad, []);
});
