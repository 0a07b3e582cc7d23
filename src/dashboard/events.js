// The /monitor/ws event stream: one WebSocket that reconnects by itself with exponential
// backoff (0.5 s doubling up to 10 s) whenever it drops, and reports its state.

const MIN_DELAY = 500;
const MAX_DELAY = 10000;

export class EventStream {
  /**
   * onEvent(event) for every message; onState("open" | "reconnecting", {attempt, delay})
   * when the connection comes or goes.
   */
  constructor({ onEvent, onState }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.delay = MIN_DELAY;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  url() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/monitor/ws";
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }

  send(doc) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(doc));
  }

  connect() {
    clearTimeout(this.timer);
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.delay = MIN_DELAY;
      this.attempt = 0;
      this.onState("open", {});
    };
    ws.onmessage = (m) => {
      let event;
      try {
        event = JSON.parse(m.data);
      } catch {
        return;
      }
      this.onEvent(event);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    const delay = this.delay;
    this.attempt += 1;
    this.delay = Math.min(this.delay * 2, MAX_DELAY);
    this.onState("reconnecting", { attempt: this.attempt, delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
