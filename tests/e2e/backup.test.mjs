// The dashboard's backups (issue 17): the selected workspace shows its last backup, "Back up now"
// makes one, and "Restore…" lists its snapshots, shows what a restore would change, and restores
// only after the dialog is confirmed (Cancel keeps the workspace as it is). Debian's Chromium
// through playwright-core. Run by tests/integration/test_backup_daemon.py, which passes CK_URL,
// CK_USER, CK_PASSWORD (the only user, an admin), CK_WS (a workspace folder with keep.txt backed
// up once and then deleted), CK_SCREENSHOTS, CK_PLAYWRIGHT and CK_CHROMIUM.
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";

const env = (k, d) => process.env[k] ?? d;
const BASE = env("CK_URL");
const WS = env("CK_WS");
const SHOTS = env("CK_SCREENSHOTS", path.resolve("screenshots"));
assert.ok(BASE && WS, "run this through tests/integration/test_backup_daemon.py");
const require = createRequire(import.meta.url);
const { chromium } = require(env("CK_PLAYWRIGHT", "playwright-core"));
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"];

let browser;
let page;
const problems = [];
fs.mkdirSync(SHOTS, { recursive: true });
const keep = path.join(WS, "notes", "keep.txt");

async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

before(async () => {
  browser = await chromium.launch({ executablePath: env("CK_CHROMIUM", "/usr/bin/chromium"), args: ARGS });
  page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(20000);
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(BASE + "/monitor/");
  const form = page.locator("#login-form");
  await form.getByLabel("Name").fill(env("CK_USER"));
  await form.getByLabel("Password").fill(env("CK_PASSWORD"));
  await form.getByLabel("Password").press("Enter");
  await page.locator("#main").waitFor();
  problems.length = 0; // the 401 of the signed-out page before the login
});

after(async () => {
  await browser?.close();
});

test("the selected workspace shows its last backup and backs up now", async () => {
  await page.goto(BASE + "/monitor/#/w/notes");
  await page.locator("#backup-summary").filter({ hasText: /near: \d+ (s|min) ago/ }).waitFor();
  await page.getByRole("button", { name: "Back up now" }).click();
  await page.locator("#action-result").filter({ hasText: "notes: backup queued on 1 destination" }).waitFor();
  await shot("backup-01-row");
});

test("Restore… shows the plan, Cancel keeps the workspace, Restore brings the file back", async () => {
  assert.equal(fs.existsSync(keep), false, "the test deleted keep.txt before");
  await page.getByRole("button", { name: "Restore…" }).click();
  const dialog = page.getByRole("dialog", { name: "Restore notes from a backup" });
  await dialog.waitFor();
  // The oldest snapshot (listed last) has keep.txt; "Back up now" above may have added a newer one
  // that does not.
  const oldest = async () => {
    const select = dialog.locator("#restore-snapshot");
    await select.locator("option").first().waitFor({ state: "attached" });
    const n = await select.locator("option").count();
    await select.selectOption({ index: n - 1 });
  };
  await oldest();
  await dialog.locator("#restore-plan").filter({ hasText: /This writes 1 file and deletes 0 in notes/ }).waitFor();
  await shot("backup-02-dialog");
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await page.locator("#action-result").filter({ hasText: "Kept notes as it is" }).waitFor();
  assert.equal(fs.existsSync(keep), false, "Cancel restored nothing");

  await page.getByRole("button", { name: "Restore…" }).click();
  await oldest();
  await dialog.locator("#restore-plan").filter({ hasText: /This writes 1 file/ }).waitFor();
  await dialog.getByLabel(/Exact: make the workspace exactly the snapshot/).check();
  await dialog.locator("#restore-plan").filter({ hasText: /This writes 1 file/ }).waitFor();
  await dialog.getByRole("button", { name: "Restore notes" }).click();
  await page.locator("#action-result").filter({ hasText: /notes: restored snapshot .* \(1 files changed\)/ }).waitFor();
  assert.equal(fs.readFileSync(keep, "utf8"), "kept\n");
  await shot("backup-03-restored");
  assert.deepEqual(problems, []);
});
