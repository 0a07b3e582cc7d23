// The preview pane: the workspace in a sandboxed iframe at desktop, tablet or mobile size.
// The sandbox never has allow-same-origin: the page inside runs on an opaque origin, so it can
// neither read the dashboard (its CSRF value, its API) nor its cookies. With gateway.domain set,
// the frame loads the workspace's own origin (the API's `url`, http://<name>.<domain>/).

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

  /** `url`: the workspace's address as the API gives it (its own host, or /<name>/). */
  show(name, url = "") {
    const src = url || (name === "www" ? "/" : "/" + encodeURIComponent(name) + "/");
    if (this.name === name && this.frame.getAttribute("src") === src) return;
    this.name = name;
    this.frame.src = src;
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
      // The frame's origin is opaque, so this throws; kept for a browser that allows it.
      this.frame.contentWindow.location.reload();
    } catch {
      // Not ours to reload: load the workspace again.
      this.frame.src = this.frame.src;
    }
  }
}
