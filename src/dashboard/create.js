// The "new workspace" form: a name checked with the server's rule before it is sent, a source
// (a template from GET /templates, a copy of an existing workspace, or an empty page) and a
// private flag, sent as POST /workspaces. The new row then follows the live status events.
import * as api from "./api.js";
import { nameProblem } from "./names.js";
import { el } from "./workspaces.js";

export class CreateForm {
  /**
   * els: {toggle, form, name, nameError, sources (radios), template, clone, templateNote,
   * isPrivate, submit, close, error, result}; list: the WorkspaceList (the clone picker's
   * names); onCreated(workspace) after a 201; onApiError(e) answers true when it handled e
   * (a session that ended).
   */
  constructor(els, list, { onCreated, onApiError }) {
    this.els = els;
    this.list = list;
    this.onCreated = onCreated;
    this.onApiError = onApiError;
    this.busy = false;
    els.toggle.addEventListener("click", () => this.open(els.form.hidden));
    els.close.addEventListener("click", () => {
      this.open(false);
      els.toggle.focus();
    });
    els.form.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        this.open(false);
        els.toggle.focus();
      }
    });
    // Once a problem is shown, it follows the typing (and goes as soon as the name is fine).
    els.name.addEventListener("input", () => {
      if (els.name.getAttribute("aria-invalid") === "true") this.checkName();
    });
    for (const r of els.sources) r.addEventListener("change", () => this.syncSource());
    els.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    this.syncSource();
  }

  open(on) {
    const { toggle, form, name } = this.els;
    form.hidden = !on;
    toggle.setAttribute("aria-expanded", String(on));
    if (!on) return;
    this.refreshClones();
    this.loadTemplates();
    name.focus();
  }

  source() {
    const r = [...this.els.sources].find((s) => s.checked);
    return r ? r.value : "empty";
  }

  syncSource() {
    const s = this.source();
    this.els.template.disabled = s !== "template";
    this.els.clone.disabled = s !== "clone";
  }

  async loadTemplates() {
    const { template, templateNote, sources } = this.els;
    const radio = [...sources].find((s) => s.value === "template");
    let list = [];
    let problem = "";
    try {
      const r = await api.templates();
      list = (r && r.templates) || [];
      if (!list.length) {
        problem =
          "This control plane has no templates (set the `templates` config key); start from a copy or an empty page.";
      }
    } catch (e) {
      if (this.onApiError(e)) return;
      problem = `The templates could not be loaded (${e.message}); start from a copy or an empty page, or reopen this form to try again.`;
    }
    const keep = template.value;
    template.textContent = "";
    for (const t of list) {
      const about = t.description || t.type || "";
      template.append(el("option", { value: t.name }, about ? `${t.name} — ${about}` : t.name));
    }
    if (list.some((t) => t.name === keep)) template.value = keep;
    templateNote.textContent = problem;
    radio.disabled = !list.length;
    if (!list.length && radio.checked) {
      [...sources].find((s) => s.value === "empty").checked = true;
    }
    this.syncSource();
  }

  /** Fills the "copy of" picker with the workspaces in the list (kept when it changes). */
  refreshClones() {
    const { clone, sources } = this.els;
    const names = this.list.names().sort();
    const current = [...clone.options].map((o) => o.value);
    if (current.length === names.length && current.every((n, i) => n === names[i])) return;
    const keep = clone.value;
    clone.textContent = "";
    for (const n of names) clone.append(el("option", { value: n }, n));
    if (names.includes(keep)) clone.value = keep;
    const radio = [...sources].find((s) => s.value === "clone");
    radio.disabled = !names.length;
    if (!names.length && radio.checked) [...sources].find((s) => s.value === "empty").checked = true;
    this.syncSource();
  }

  checkName() {
    const { name, nameError } = this.els;
    const problem = nameProblem(name.value);
    nameError.textContent = problem;
    name.setAttribute("aria-invalid", String(Boolean(problem)));
    return !problem;
  }

  async submit() {
    if (this.busy) return;
    const { name, submit, error, result, template, clone, isPrivate } = this.els;
    error.textContent = "";
    if (!this.checkName()) {
      name.focus();
      return;
    }
    const body = { name: name.value };
    const source = this.source();
    let from = "as an empty page";
    if (source === "template") {
      if (!template.value) {
        error.textContent = "Pick a template, or start from a copy or an empty page.";
        template.focus();
        return;
      }
      body.template = template.value;
      from = `from the template ${template.value}`;
    } else if (source === "clone") {
      if (!clone.value) {
        error.textContent = "Pick the workspace to copy, or start from a template or an empty page.";
        clone.focus();
        return;
      }
      body.clone_of = clone.value;
      from = `as a copy of ${clone.value}`;
    }
    if (isPrivate.checked) body.public = false;
    this.busy = true;
    submit.disabled = true;
    result.textContent = `Creating ${body.name} ${from}…`;
    try {
      const w = await api.createWorkspace(body);
      name.value = "";
      name.removeAttribute("aria-invalid");
      result.textContent = "";
      const link = el("a", { href: "#/w/" + encodeURIComponent(w.name) }, `Show ${w.name}`);
      result.append(
        `Created ${w.name} ${from}${w.public === false ? " (private)" : ""}. It is starting: its row ` +
          `in the list shows “running” when it is ready. `,
        link,
      );
      this.onCreated(w);
    } catch (e) {
      result.textContent = "";
      if (this.onApiError(e)) return;
      const next =
        e.code === "already_exists"
          ? " Choose another name."
          : e.status === 403
            ? " Ask an administrator for the deploy role."
            : "";
      error.textContent = `The control plane did not create ${body.name}: ${api.sentence(e.message)}${next}`;
      if (e.code === "already_exists" || e.code === "invalid_argument") name.focus();
    } finally {
      this.busy = false;
      submit.disabled = false;
    }
  }
}
