// The workspace list: one row per workspace, updated in place by status and activity events.

const rows = new Map(); // name -> {li, data}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}
export { el };

export class WorkspaceList {
  constructor(list, empty, count) {
    this.list = list;
    this.empty = empty;
    this.count = count;
    this.selected = "";
    this.onChange = () => {}; // called when a row comes or goes
  }

  /** Replaces every row (the hello event, or the REST list before it). */
  replace(workspaces) {
    const keep = new Set(workspaces.map((w) => w.name));
    for (const name of [...rows.keys()]) if (!keep.has(name)) this.remove(name);
    for (const w of workspaces) this.upsert(w);
    this.refreshCount();
  }

  get(name) {
    const row = rows.get(name);
    return row ? row.data : null;
  }

  names() {
    return [...rows.keys()];
  }

  /** Adds or updates one workspace; returns true if it is new. */
  upsert(w) {
    let row = rows.get(w.name);
    const added = !row;
    if (!row) {
      const link = el("a", { class: "ws-name", href: "#/w/" + encodeURIComponent(w.name) }, w.name);
      const li = el(
        "li",
        { class: "ws-row", "data-workspace": w.name },
        link,
        el("span", { class: "ws-type muted" }),
        el("span", { class: "badge ws-status" }),
        el("span", { class: "ws-activity muted" }),
      );
      row = { li, data: { name: w.name } };
      rows.set(w.name, row);
      const after = [...rows.keys()].filter((n) => n > w.name).sort()[0];
      this.list.insertBefore(li, after ? rows.get(after).li : null);
    }
    Object.assign(row.data, Object.fromEntries(Object.entries(w).filter(([, v]) => v !== undefined)));
    this.render(row);
    this.refreshCount();
    if (added) this.onChange();
    return added;
  }

  remove(name) {
    const row = rows.get(name);
    if (!row) return;
    row.li.remove();
    rows.delete(name);
    this.refreshCount();
    this.onChange();
  }

  select(name) {
    this.selected = name;
    for (const [n, row] of rows) {
      if (n === name) row.li.querySelector(".ws-name").setAttribute("aria-current", "true");
      else row.li.querySelector(".ws-name").removeAttribute("aria-current");
      row.li.classList.toggle("selected", n === name);
    }
  }

  render(row) {
    const d = row.data;
    const status = d.frozen && d.status === "running" ? "frozen" : d.status || "unknown";
    const badge = row.li.querySelector(".ws-status");
    badge.textContent = status;
    badge.dataset.status = status;
    row.li.dataset.status = d.status || "";
    row.li.querySelector(".ws-type").textContent = d.type || "";
    const act = row.li.querySelector(".ws-activity");
    act.textContent = d.activity || "";
    act.title = d.activity ? "activity: " + d.activity : "";
    row.li.querySelector(".ws-name").setAttribute(
      "aria-label",
      `${d.name}: ${status}${d.activity ? ", " + d.activity : ""}`,
    );
  }

  refreshCount() {
    const n = rows.size;
    this.count.textContent = n === 1 ? "1 workspace" : `${n} workspaces`;
    this.empty.hidden = n > 0;
  }
}
