// Backups of the selected workspace (issue 17): its last snapshot on each destination, "Back up
// now", and a restore of a chosen snapshot after a confirming dialog that shows what the restore
// would change (a dry run) before anything is written.
import * as api from "./api.js";

const $ = (id) => document.getElementById(id);

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// "2026-12-06 19:40:15" in the browser's time zone, from unix seconds.
function when(seconds) {
  const d = new Date(seconds * 1000);
  const p = (v) => String(v).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export class Backups {
  /** `report(text)` shows an outcome; `failed(error, what)` handles a refused call. */
  constructor({ report, failed }) {
    this.report = report;
    this.failed = failed;
    this.name = "";
    this.snapshots = [];
    this.dialog = $("restore-dialog");
    $("backup-now").addEventListener("click", () => this.backupNow());
    $("restore-open").addEventListener("click", () => this.openRestore());
    $("restore-snapshot").addEventListener("change", () => this.plan());
    for (const r of document.querySelectorAll('input[name="restore-mode"]')) {
      r.addEventListener("change", () => this.plan());
    }
    this.dialog.addEventListener("close", () => this.closed());
  }

  /** Shows the row for workspace `name` (hidden when the server has no backup destination). */
  async show(name) {
    this.name = name;
    const row = $("detail-backup");
    try {
      const st = await api.backups();
      if (this.name !== name) return;
      if (!(st.destinations || []).length) {
        row.hidden = true; // this server has no backup destination configured
        return;
      }
      const mine = (st.workspaces && st.workspaces[name]) || {};
      const parts = [];
      for (const d of st.destinations || []) {
        const last = mine[d.name];
        parts.push(last ? `${d.name}: ${ago(last.time_ms)}` : `${d.name}: no backup yet`);
      }
      $("backup-summary").textContent = `Backups (every ${st.schedule}) · ` + parts.join(" · ");
      row.hidden = false;
    } catch (e) {
      if (this.name === name) row.hidden = true;
      if (e.status !== 503 && e.status !== 401 && e.status !== 403) this.failed(e);
    }
  }

  async backupNow() {
    const name = this.name;
    if (!name) return;
    $("backup-now").disabled = true;
    this.report(`Backing up ${name}…`);
    try {
      const r = await api.startBackup(name);
      const n = (r.jobs || []).length;
      this.report(`${name}: backup queued on ${n} destination${n === 1 ? "" : "s"}; this row updates when it ends.`);
    } catch (e) {
      this.failed(e, `Backing up ${name} failed`);
    } finally {
      $("backup-now").disabled = false;
    }
  }

  async openRestore() {
    const name = this.name;
    if (!name) return;
    $("restore-title").textContent = `Restore ${name} from a backup`;
    $("restore-error").textContent = "";
    $("restore-plan").textContent = "Loading the snapshots…";
    $("restore-confirm").disabled = true;
    const select = $("restore-snapshot");
    select.textContent = "";
    this.dialog.returnValue = "";
    this.dialog.showModal();
    try {
      const r = await api.snapshots(name);
      this.snapshots = (r.snapshots || []).slice().reverse(); // newest first
      for (const s of this.snapshots) {
        const o = document.createElement("option");
        o.value = `${s.destination}\n${s.id}`;
        o.textContent = `${when(s.time)} · ${s.destination} · ${s.files} files, ${size(s.bytes)}`;
        select.append(o);
      }
      const errors = (r.errors || []).map((e) => `${e.destination}: ${e.message}`);
      if (!this.snapshots.length) {
        $("restore-plan").textContent = "";
        $("restore-error").textContent = `${name} has no snapshot yet.` + (errors.length ? " " + errors.join("; ") : "");
        return;
      }
      if (errors.length) $("restore-error").textContent = "Some destinations could not be read: " + errors.join("; ");
      select.focus();
      this.plan();
    } catch (e) {
      $("restore-plan").textContent = "";
      $("restore-error").textContent = api.sentence(e.message);
    }
  }

  chosen() {
    const [destination, snapshot] = ($("restore-snapshot").value || "\n").split("\n");
    const mode = document.querySelector('input[name="restore-mode"]:checked').value;
    return { destination, snapshot, mode };
  }

  // What the chosen restore would change, before it is confirmed.
  async plan() {
    const name = this.name;
    const c = this.chosen();
    if (!c.snapshot) return;
    $("restore-confirm").disabled = true;
    $("restore-plan").textContent = "Comparing the snapshot with the workspace…";
    try {
      const r = await api.restore(name, { ...c, dry_run: true });
      if (JSON.stringify(this.chosen()) !== JSON.stringify(c)) return; // the choice moved on
      const writes = r.changes.filter((x) => x.op === "write").length;
      const removes = r.changes.filter((x) => x.op === "remove").length;
      $("restore-plan").textContent =
        writes || removes
          ? `This writes ${writes} file${writes === 1 ? "" : "s"} and deletes ${removes} in ${name} ` +
            `(${r.unchanged} unchanged); the workspace restarts afterwards.`
          : `${name} already matches this snapshot: nothing would change.`;
      $("restore-confirm").disabled = false;
      $("restore-confirm").textContent = `Restore ${name}`;
    } catch (e) {
      $("restore-plan").textContent = "";
      $("restore-error").textContent = api.sentence(e.message);
    }
  }

  async closed() {
    const name = this.name;
    if (this.dialog.returnValue !== "restore" || !name) {
      this.report(`Kept ${name} as it is: nothing was restored.`);
      $("restore-open").focus();
      return;
    }
    const c = this.chosen();
    this.report(`Restoring ${name} from ${c.destination}…`);
    try {
      const r = await api.restore(name, c);
      this.report(`${name}: restore queued (job ${r.job.id}); the workspace restarts when its files are back.`);
    } catch (e) {
      this.failed(e, `Restoring ${name} failed`);
    }
    $("restore-open").focus();
  }

  /** A "backup" event for `workspace`. */
  onEvent(e) {
    if (e.workspace !== this.name) return;
    if (e.action === "restore") {
      this.report(
        e.ok
          ? `${e.workspace}: restored snapshot ${e.snapshot} (${e.changed} files changed).`
          : `${e.workspace}: the restore failed: ${api.sentence(e.error)}`,
      );
    }
    this.show(this.name);
  }
}
