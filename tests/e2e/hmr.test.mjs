// Dev servers with hot module replacement through the gateway (issue 14, item 3): Debian's
// Chromium driven by playwright-core. Run by tests/integration/test_hmr_browser.py, which
// starts the daemon with the workspaces installed and running, and passes in the environment:
//   CK_URL          http://127.0.0.1:PORT
//   CK_PORT         PORT
//   CK_DOMAIN       the daemon's gateway.domain (workspaces at http://<name>.<domain>:PORT/)
//   CK_WORKSPACES   the workspaces folder the daemon watches (the test edits files there)
//   CK_SCREENSHOTS  the folder for screenshots
//   CK_PLAYWRIGHT   the playwright-core package folder
//   CK_CHROMIUM     the browser (default /usr/bin/chromium)
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";

const env = (k, d) => process.env[k] ?? d;
const BASE = env("CK_URL");
const PORT = env("CK_PORT");
const DOMAIN = env("CK_DOMAIN");
const WORKSPACES = env("CK_WORKSPACES");
const SHOTS = env("CK_SCREENSHOTS", path.resolve("screenshots"));
const CHROMIUM = env("CK_CHROMIUM", "/usr/bin/chromium");
for (const k of ["CK_URL", "CK_PORT", "CK_DOMAIN", "CK_WORKSPACES"]) {
  assert.ok(process.env[k], `${k} is not set (run this through tests/integration/test_hmr_browser.py)`);
}

const require = createRequire(import.meta.url);
const { chromium } = require(env("CK_PLAYWRIGHT", "playwright-core"));

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  // Only the gateway: <name>.<domain> and <domain> are 127.0.0.1, nothing else resolves.
  `--host-resolver-rules=MAP *.${DOMAIN} 127.0.0.1, MAP ${DOMAIN} 127.0.0.1, ` +
    "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
];

// How long an edit may take to show: the daemon's watcher, the copy into the running app
// ("reload": "hmr"), the dev server's watcher and rebuild, the push over the WebSocket.
const UPDATE_TIMEOUT = 45000;
// The first load compiles the page (next dev compiles on demand).
const LOAD_TIMEOUT = 60000;

let browser;
fs.mkdirSync(SHOTS, { recursive: true });

before(async () => {
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30000 });
  } catch (e) {
    throw new Error(`Chromium did not start (${CHROMIUM}): ${e.message}`);
  }
});

after(async () => {
  await browser?.close();
});

async function shot(page, name) {
  const file = path.join(SHOTS, name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  console.log(`# screenshot: ${file}`);
}

// A fresh context and page that records what the page asked for, what came back, the
// WebSockets it opened, and its errors.
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1024, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const log = { requests: [], responses: [], sockets: [], problems: [] };
  page.on("request", (r) => log.requests.push(r.url()));
  page.on("response", (r) => log.responses.push({ url: r.url(), status: r.status() }));
  page.on("websocket", (ws) => {
    const s = { url: ws.url(), closed: false, received: 0 };
    ws.on("framereceived", () => s.received++);
    ws.on("close", () => (s.closed = true));
    log.sockets.push(s);
  });
  page.on("console", (m) => {
    if (m.type() === "error") log.problems.push(`console: ${m.text()} (${m.location().url || "no url"})`);
  });
  page.on("pageerror", (e) => log.problems.push(`page error: ${e.message}`));
  return { context, page, log };
}

// Replaces `from` by `to` in a file of the workspace folder, as an editor would save it.
function edit(workspace, rel, from, to) {
  const file = path.join(WORKSPACES, workspace, rel);
  const text = fs.readFileSync(file, "utf8");
  assert.ok(text.includes(from), `${rel} does not contain ${JSON.stringify(from)}`);
  fs.writeFileSync(file, text.replace(from, to));
}

function heading(workspace, rel) {
  const m = fs.readFileSync(path.join(WORKSPACES, workspace, rel), "utf8").match(/<h1>([^<]*)<\/h1>/);
  assert.ok(m, `no <h1> in ${rel}`);
  return m[1];
}

const TEMPLATES = [
  // name, the component file the test edits, the HMR socket's path under the base
  { name: "hmr-vite", file: "src/Greeting.jsx", socket: "" },
  { name: "hmr-next", file: "components/Greeting.js", socket: "_next/webpack-hmr" },
];
const ROUTINGS = [
  { routing: "by path", url: (n) => `${BASE}/${n}/`, origin: () => BASE },
  { routing: "by host", url: (n) => `http://${n}.${DOMAIN}:${PORT}/`, origin: (n) => `http://${n}.${DOMAIN}:${PORT}` },
];

for (const t of TEMPLATES) {
  for (const r of ROUTINGS) {
    test(`${t.name} ${r.routing}: an edit reaches the page without a reload and keeps the state`, async () => {
      const { context, page, log } = await openPage();
      try {
        const url = r.url(t.name);
        const before = heading(t.name, t.file);
        const response = await page.goto(url, { timeout: LOAD_TIMEOUT });
        assert.equal(response.status(), 200, `${url} answered ${response.status()}`);
        await page.locator("h1", { hasText: before }).waitFor({ timeout: LOAD_TIMEOUT });
        assert.equal(page.url(), url, "the page was redirected");

        // The HMR client is connected through the gateway, on the page's own origin and
        // under the workspace's base.
        const wsOrigin = r.origin(t.name).replace(/^http/, "ws");
        // By host too: the app keeps its base (the gateway adds /<name> to the paths outside it).
        const wsPath = `/${t.name}/${t.socket}`;
        const hmrSocket = () =>
          log.sockets.find((s) => !s.closed && s.url.split("?")[0] === wsOrigin + wsPath);
        const deadline = Date.now() + 30000;
        while (!hmrSocket() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
        assert.ok(hmrSocket(), `no open HMR WebSocket at ${wsOrigin + wsPath}; opened: ` +
          JSON.stringify(log.sockets));

        // State a reload would lose: a marker on window and the counter at 1.
        await page.evaluate(() => (window.__ck_marker = 1));
        await page.getByRole("button", { name: /Clicked 0 times/ }).click();
        await page.getByRole("button", { name: "Clicked 1 times" }).waitFor();
        await shot(page, `hmr-${t.name}-${r.routing.replace(" ", "-")}-before`);

        const after = `${before.replace(/ \(edit .*\)$/, "")} (edit ${r.routing})`;
        const t0 = Date.now();
        edit(t.name, t.file, `<h1>${before}</h1>`, `<h1>${after}</h1>`);
        await page.locator("h1", { hasText: after }).waitFor({ timeout: UPDATE_TIMEOUT });
        const took = Date.now() - t0;

        assert.equal(await page.evaluate(() => window.__ck_marker), 1, "the page was reloaded");
        assert.equal(await page.getByRole("button").textContent(), "Clicked 1 times",
          "React Fast Refresh lost the component state");
        assert.equal(page.url(), url);
        await shot(page, `hmr-${t.name}-${r.routing.replace(" ", "-")}-after`);
        console.log(`# ${t.name} ${r.routing}: the edit showed in ${took} ms`);

        // Everything the page loaded came from its own origin: nothing went to the root of
        // the gateway (the home workspace) when routed by path.
        const failed = log.responses.filter((x) => x.status >= 400);
        assert.deepEqual(failed, [], "requests that failed");
        if (r.routing === "by path") {
          const outside = log.requests.filter((u) => {
            const p = new URL(u);
            return p.origin === BASE && !p.pathname.startsWith(`/${t.name}/`) && p.pathname !== "/favicon.ico";
          });
          assert.deepEqual(outside, [], `requests outside /${t.name}/`);
        }
        // The browser's own /favicon.ico (the templates have none) is the only 404 allowed.
        assert.deepEqual(log.problems.filter((p) => !/\/favicon\.ico\)$/.test(p)), [], "errors on the page");
      } catch (e) {
        await shot(page, `hmr-${t.name}-${r.routing.replace(" ", "-")}-failed`).catch(() => {});
        throw e;
      } finally {
        await context.close();
      }
    });
  }
}

// The held case of the issue: Vite started with `--base /plain/` looped on a redirect (the
// gateway stripped the prefix, Vite sent the browser back to /plain/).
test("plain vite --base /plain/ loads by path with no redirect and its client under /plain/", async () => {
  const { context, page, log } = await openPage();
  try {
    const url = `${BASE}/plain/`;
    const response = await page.goto(url, { timeout: LOAD_TIMEOUT });
    assert.equal(response.status(), 200);
    assert.equal(response.request().redirectedFrom(), null, "the page was redirected");
    await page.locator("#out", { hasText: "plain vite is running" }).waitFor({ timeout: LOAD_TIMEOUT });
    assert.equal(page.url(), url);
    const client = log.responses.find((x) => new URL(x.url).pathname === "/plain/@vite/client");
    assert.ok(client, "/plain/@vite/client was not fetched: " + JSON.stringify(log.responses));
    assert.equal(client.status, 200);
    const redirects = log.responses.filter((x) => x.status >= 300 && x.status < 400);
    assert.deepEqual(redirects, [], "redirects");
    const outside = log.requests.filter((u) => {
      const p = new URL(u);
      return p.origin === BASE && !p.pathname.startsWith("/plain/") && p.pathname !== "/favicon.ico";
    });
    assert.deepEqual(outside, [], "requests to the root instead of /plain/");
    const deadline = Date.now() + 30000;
    const open = () => log.sockets.find((s) => !s.closed && s.url.split("?")[0] === `ws://127.0.0.1:${PORT}/plain/`);
    while (!open() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    assert.ok(open(), "Vite's HMR WebSocket is not open: " + JSON.stringify(log.sockets));
    await shot(page, "hmr-plain-vite-by-path");
  } catch (e) {
    await shot(page, "hmr-plain-vite-failed").catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
});
