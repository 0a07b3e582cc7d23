// The preview pane: the workspace in a sandboxed iframe at desktop, tablet or mobile size.

export const DEVICES = {
  desktop: { width: 1280, height: 800 },
  tablet: { width: 768, height: 1024 },
  mobile: { width: 375, height: 667 },
};

export class Preview {
  constructor({ frame, radios, reload, label }) {
    this.frame = frame;
    this.label = label;
    this.name = "";
    this.device = "desktop";
    for (const r of radios) {
      r.addEventListener("change", () => {
        if (r.checked) this.size(r.value);
      });
    }
    reload.addEventListener("click", () => this.reload());
    this.size(this.device);
  }

  show(name) {
    if (this.name === name && this.frame.getAttribute("src")) return;
    this.name = name;
    this.frame.src = name === "www" ? "/" : "/" + encodeURIComponent(name) + "/";
  }

  size(device) {
    const d = DEVICES[device];
    if (!d) return;
    this.device = device;
    this.frame.style.width = d.width + "px";
    this.frame.style.height = d.height + "px";
    this.frame.dataset.device = device;
    this.label.textContent = `${d.width} × ${d.height}`;
  }

  reload() {
    if (!this.name) return;
    try {
      // Same origin (the sandbox allows it): a real reload of whatever page the preview is on.
      this.frame.contentWindow.location.reload();
    } catch {
      // Not readable (an error page, a navigation elsewhere): load the workspace again.
      this.frame.src = this.frame.src;
    }
  }
}
