// System health: GET /monitor/api/v1/status and the daemon's RSS from /monitor/metrics.
import * as api from "./api.js";

function mib(bytes) {
  return (bytes / (1024 * 1024)).toFixed(1) + " MiB";
}

function duration(s) {
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

export async function loadHealth(dl) {
  const facts = [];
  try {
    const s = await api.status();
    const byStatus = Object.entries(s.by_status || {})
      .map(([k, v]) => `${v} ${k}`)
      .join(", ");
    facts.push(["Workspaces", `${s.workspaces}${byStatus ? " (" + byStatus + ")" : ""}`]);
    if (s.jobs) {
      const jobs = Object.entries(s.jobs)
        .map(([k, v]) => `${v} ${k}`)
        .join(", ");
      facts.push(["Jobs", jobs || "none"]);
    }
    facts.push(["Runtime", s.runtime + (s.isolation ? " · " + s.isolation : "")]);
    facts.push(["Storage", s.storage]);
    if (s.storage_error) facts.push(["Storage error", s.storage_error]);
    facts.push(["Uptime", duration(s.uptime_seconds || 0)]);
    facts.push(["Version", s.version]);
    if (s.rss_bytes) facts.push(["Memory (RSS)", mib(s.rss_bytes)]);
  } catch (e) {
    facts.push(["Status", "unavailable: " + e.message]);
  }
  try {
    const m = await api.metrics();
    const rss = m.cloudyknight_process_resident_memory_bytes;
    if (rss !== undefined) {
      const i = facts.findIndex(([k]) => k === "Memory (RSS)");
      if (i >= 0) facts.splice(i, 1);
      facts.push(["Memory (RSS)", mib(rss)]);
    }
    const cpu = m.cloudyknight_process_cpu_seconds_total;
    if (cpu !== undefined) facts.push(["CPU time", cpu.toFixed(1) + " s"]);
    const fds = m.cloudyknight_process_open_fds;
    if (fds !== undefined) facts.push(["Open files", String(fds)]);
  } catch {
    // Metrics are optional for this panel.
  }
  dl.textContent = "";
  for (const [k, v] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dd.dataset.fact = k;
    dl.append(dt, dd);
  }
}
