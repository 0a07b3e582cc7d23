// The log viewer: the last lines from the REST API, then live `log` events; a follow toggle
// (keep the newest line in view) and a search box that filters lines as you type.

const MAX_LINES = 5000;

export class LogViewer {
  constructor({ pre, search, follow, clear, note }) {
    this.pre = pre;
    this.search = search;
    this.follow = follow;
    this.note = note;
    this.lines = [];
    this.query = "";
    search.addEventListener("input", () => {
      this.query = search.value.toLowerCase();
      this.refilter();
    });
    follow.addEventListener("change", () => this.scroll());
    clear.addEventListener("click", () => this.reset());
    // Scrolling up by hand pauses follow; back at the bottom resumes it.
    pre.addEventListener("scroll", () => {
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
      if (!atBottom && follow.checked && this.userScroll) follow.checked = false;
      this.userScroll = true;
    });
  }

  reset(lines = []) {
    this.lines = [];
    this.pre.textContent = "";
    for (const l of lines) this.append(l, false);
    this.refilter();
  }

  matches(line) {
    return !this.query || line.toLowerCase().includes(this.query);
  }

  append(line, render = true) {
    const div = document.createElement("div");
    div.className = "line";
    div.textContent = line;
    this.lines.push({ line, div });
    if (this.lines.length > MAX_LINES) this.lines.shift().div.remove();
    div.hidden = !this.matches(line);
    this.pre.append(div);
    if (render) {
      this.count();
      this.scroll();
    }
  }

  refilter() {
    for (const { line, div } of this.lines) div.hidden = !this.matches(line);
    this.count();
    this.scroll();
  }

  count() {
    const shown = this.query ? this.lines.filter((l) => !l.div.hidden).length : this.lines.length;
    this.note.textContent = this.query
      ? `${shown} of ${this.lines.length} lines match “${this.search.value}”`
      : `${this.lines.length} lines`;
  }

  scroll() {
    if (!this.follow.checked) return;
    this.userScroll = false;
    this.pre.scrollTop = this.pre.scrollHeight;
  }

  message(text) {
    this.note.textContent = text;
  }
}
