// One websocket per tab (docs/chat-protocol.md): reconnects by itself with exponential
// backoff and jitter, keeps the connection honest with pings, and queues frames written
// while it is down so nothing the person sends is dropped on the floor.

const BACKOFF_START = 500; // ms
const BACKOFF_MAX = 10000; // ms
const PING_EVERY = 25000; // ms
const PONG_WITHIN = 10000; // ms

export const CLOSE_NOT_SIGNED_IN = 4401;
export const CLOSE_NOT_ALLOWED = 4403;

export class ChatSocket {
  /**
   * @param {string} path  e.g. "/ws/chat/"
   * @param {{onFrame: Function, onOpen: Function, onState: Function, onFatal: Function}} handlers
   */
  constructor(path, handlers) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}${path}`;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.queue = [];
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stopped = false;
    this.state = "connecting"; // connecting | open | reconnecting | closed
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.reconnectNow();
    });
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.attempt = 0;
      this.setState("open");
      this.startPings();
      this.handlers.onOpen();
      const queued = this.queue;
      this.queue = [];
      for (const frame of queued) this.send(frame);
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && frame.type === "pong") {
        clearTimeout(this.pongTimer);
        return;
      }
      this.handlers.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.stopPings();
      if (event.code === CLOSE_NOT_SIGNED_IN || event.code === CLOSE_NOT_ALLOWED) {
        this.stopped = true;
        this.setState("closed");
        this.handlers.onFatal(event.code);
        return;
      }
      this.scheduleRetry();
    });
    // "error" is always followed by "close", which does the work.
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.handlers.onState(state);
  }

  scheduleRetry() {
    if (this.stopped) return;
    this.setState("reconnecting");
    const base = Math.min(BACKOFF_MAX, BACKOFF_START * 2 ** this.attempt);
    this.attempt += 1;
    // Full jitter on the upper half: many tabs must not reconnect in lockstep.
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Skip the wait (the network came back, the tab became visible). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    this.connect();
  }

  /** Drop the current connection (dead without a close) and reconnect. */
  restart() {
    const ws = this.ws;
    this.ws = null;
    this.stopPings();
    if (ws) {
      try {
        ws.close();
      } catch {
        /* already closing */
      }
    }
    this.scheduleRetry();
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send now if open; otherwise queue `queueable` frames until the socket reopens. */
  send(frame, { queueable = true } = {}) {
    if (this.isOpen) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    if (queueable) this.queue.push(frame);
    return false;
  }

  startPings() {
    this.stopPings();
    this.pingTimer = setInterval(() => {
      if (!this.isOpen) return;
      this.ws.send(JSON.stringify({ type: "ping" }));
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.restart(), PONG_WITHIN);
    }, PING_EVERY);
  }

  stopPings() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  /** For tests and debugging: close the socket as a network failure would. */
  simulateDrop() {
    if (this.ws) this.ws.close(4000, "simulated drop");
  }
}
