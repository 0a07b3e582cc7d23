// The run-command box: a command line split into argv here (shell-like quoting, no shell),
// POST /workspaces/{name}/run?stream=1, the output shown as it arrives, then the exit code.
import * as api from "./api.js";

const MAX_OUTPUT = 1 << 20; // characters kept on screen (the oldest go first)

/**
 * Splits a command line into words like a POSIX shell does, without running one: blanks
 * separate words; 'single quotes' keep everything; "double quotes" keep everything but a
 * backslash before \ " $ ` (which it escapes); outside quotes a backslash escapes any
 * character. Pipes, redirects and variables are plain text: use sh -c '…' for those.
 * Returns {argv} or {error} (a message that says how to fix the line).
 */
export function splitArgs(line) {
  const argv = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === " " || c === "\t" || c === "\n") {
      if (inWord) argv.push(word);
      word = "";
      inWord = false;
      i++;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) return { error: "The command has a ' quote that is not closed: close it with another '." };
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      inWord = true;
      i++;
      for (;;) {
        if (i >= line.length) {
          return { error: 'The command has a " quote that is not closed: close it with another ".' };
        }
        const d = line[i];
        if (d === '"') {
          i++;
          break;
        }
        if (d === "\\" && i + 1 < line.length && '\\"$`\n'.includes(line[i + 1])) {
          if (line[i + 1] !== "\n") word += line[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
    } else if (c === "\\") {
      if (i + 1 >= line.length) {
        return { error: "The command ends with a backslash: remove it, or put a character after it." };
      }
      if (line[i + 1] !== "\n") {
        word += line[i + 1];
        inWord = true;
      }
      i += 2;
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) argv.push(word);
  if (!argv.length) return { error: "Enter a command to run, such as ls -la or npm test." };
  return { argv };
}

export class RunBox {
  /**
   * els: {form, command, timeout, submit, cancel, error, result, output};
   * onApiError(e) answers true when it handled e (a session that ended).
   */
  constructor(els, { onApiError }) {
    this.els = els;
    this.onApiError = onApiError;
    this.name = "";
    this.controller = null;
    els.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.run();
    });
    els.cancel.addEventListener("click", () => {
      if (this.controller) this.controller.abort();
    });
    els.command.addEventListener("input", () => els.command.removeAttribute("aria-invalid"));
  }

  /** The workspace the box runs in; another one clears the box and ends a run in progress. */
  setWorkspace(name) {
    if (name === this.name) return;
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.busy(false);
    this.name = name;
    this.els.error.textContent = "";
    this.els.result.textContent = "";
    this.els.output.textContent = "";
    this.els.output.dataset.state = "";
  }

  busy(on) {
    this.els.submit.disabled = on;
    this.els.cancel.hidden = !on;
    this.els.output.setAttribute("aria-busy", String(on));
  }

  append(text) {
    const out = this.els.output;
    out.append(text);
    if (out.textContent.length > MAX_OUTPUT) out.textContent = out.textContent.slice(-MAX_OUTPUT);
    out.scrollTop = out.scrollHeight;
  }

  async run() {
    if (this.controller || !this.name) return;
    const { command, timeout, error, result, output } = this.els;
    error.textContent = "";
    const split = splitArgs(command.value);
    if (split.error) {
      error.textContent = split.error;
      command.setAttribute("aria-invalid", "true");
      command.focus();
      return;
    }
    const limit = timeout.value.trim() || "30s";
    const name = this.name;
    const controller = new AbortController();
    this.controller = controller;
    output.textContent = "";
    output.dataset.state = "running";
    result.textContent = `Running ${split.argv[0]} in ${name}…`;
    this.busy(true);
    let ended = false;
    try {
      const res = await api.run(name, split.argv, limit, controller.signal);
      for await (const msg of api.ndjson(res)) {
        if (this.controller !== controller) return;
        if (typeof msg.output === "string") {
          this.append(msg.output);
        } else if (msg.error) {
          ended = true;
          output.dataset.state = "error";
          result.textContent = "";
          error.textContent = `The command did not finish: ${api.sentence(msg.error.message || msg.error.code)} Run it again when that is fixed.`;
        } else if (typeof msg.exit_code === "number") {
          ended = true;
          output.dataset.state = msg.exit_code === 0 && !msg.timed_out ? "ok" : "failed";
          result.textContent = msg.timed_out
            ? `Timed out after ${limit} and was stopped (exit code ${msg.exit_code}): give it a longer timeout, or make it finish sooner.`
            : msg.exit_code === 0
              ? "Finished with exit code 0."
              : `Failed with exit code ${msg.exit_code}: ${output.textContent ? "its output shows why" : "it wrote no output"}.`;
        }
      }
      if (!ended && this.controller === controller) {
        output.dataset.state = "error";
        result.textContent = "";
        error.textContent =
          "The answer ended before the command did (no exit code): the control plane may have restarted; run it again.";
      }
    } catch (e) {
      // Another workspace was chosen meanwhile: the box is theirs now.
      if (this.controller !== controller) return;
      output.dataset.state = "error";
      result.textContent = "";
      if (e.name === "AbortError") {
        result.textContent = "Cancelled: the output stopped here, and the control plane stops the command.";
      } else if (!this.onApiError(e)) {
        // 400: the command or the timeout; 409: no app running there (the message says which).
        const next =
          e.status === 400
            ? " Fix the command or the timeout and run it again."
            : e.status === 409 && !/start it/.test(e.message)
              ? " Commands run where a workspace's app runs: pick a workspace with one."
              : "";
        error.textContent = `The command did not run in ${name}: ${api.sentence(e.message)}${next}`;
      }
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.busy(false);
      }
    }
  }
}
