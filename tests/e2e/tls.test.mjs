// The gateway over TLS in headless Chromium (driven by tests/integration/test_browser_tls.py).
// Chromium reads no CA from a flag: it is told to accept the one test certificate by the
// SHA-256 of its public key (--ignore-certificate-errors-spki-list), which leaves every other
// check (name, validity, chain to that key) in place. A launch without that flag must meet the
// certificate error, so the test shows the flag, not a lax browser, is what lets the page load.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

const env = (k, d) => process.env[k] ?? d;
const PORT = env("CK_TLS_PORT");
const SPKI = env("CK_TLS_SPKI");
const DOMAIN = env("CK_DOMAIN", "example.test");
const CHROMIUM = env("CK_CHROMIUM", "/usr/bin/chromium");
assert.ok(PORT && SPKI, "CK_TLS_PORT / CK_TLS_SPKI unset (run this through test_browser_tls.py)");

const require = createRequire(import.meta.url);
const { chromium } = require(env("CK_PLAYWRIGHT", "playwright-core"));

const BASE_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  `--host-resolver-rules=MAP *.${DOMAIN} 127.0.0.1 , MAP ${DOMAIN} 127.0.0.1 , ` +
    "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
];
const origin = (host) => `https://${host}:${PORT}`;

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [...BASE_ARGS, `--ignore-certificate-errors-spki-list=${SPKI}`],
    headless: true,
    timeout: 30000,
  });
});

after(async () => {
  if (browser) await browser.close();
});

test("the home page and a workspace load over https, with no certificate interstitial", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  for (const [url, text] of [
    [`${origin(DOMAIN)}/`, "WWW-HOME-MARKER"],
    [`${origin(DOMAIN)}/static/`, "STATIC-INDEX-MARKER"],
    [`${origin(`static.${DOMAIN}`)}/`, "STATIC-INDEX-MARKER"],
  ]) {
    const res = await page.goto(url, { waitUntil: "load" });
    assert.ok(res, `no response for ${url}`);
    assert.equal(res.status(), 200, url);
    assert.equal(new URL(page.url()).protocol, "https:", url);
    const details = await res.securityDetails();
    assert.ok(details, `no TLS details for ${url}`);
    assert.equal(details.subjectName, DOMAIN, url);
    assert.match(details.protocol, /^TLS 1\.[23]$/, url);
    assert.equal((await res.allHeaders())["strict-transport-security"], "max-age=300", url);
    const body = await page.textContent("body");
    assert.ok(body.includes(text), `${url}: '${text}' not in the page: ${body.slice(0, 300)}`);
  }
  // A WebSocket from the page: /monitor/ws over wss:// says hello.
  await page.goto(`${origin(DOMAIN)}/monitor/healthz`);
  const hello = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        const timer = setTimeout(() => reject(new Error("no hello within 10 s")), 10000);
        ws.onmessage = (e) => {
          clearTimeout(timer);
          ws.close();
          resolve(JSON.parse(e.data));
        };
        ws.onerror = () => reject(new Error("WebSocket error"));
      }),
    `wss://${DOMAIN}:${PORT}/monitor/ws`,
  );
  assert.equal(hello.type, "hello");
  assert.ok(hello.workspaces.some((w) => w.name === "static"), JSON.stringify(hello));
  await context.close();
});

test("without the certificate's key pinned, Chromium refuses it", async () => {
  const strict = await chromium.launch({ executablePath: CHROMIUM, args: BASE_ARGS, headless: true, timeout: 30000 });
  try {
    const page = await strict.newPage();
    await assert.rejects(page.goto(`${origin(DOMAIN)}/`), /ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await strict.close();
  }
});
