// Live events from /api/events, read with fetch() streaming (EventSource cannot send the
// Authorization header) and parsed as server-sent events here: "field: value" lines,
// events separated by a blank line, ":" lines are comments (the server's keep-alive).
// On any end or error it reconnects with backoff, resuming with Last-Event-ID.

import { authHeaders } from "./api.js";

/** Incremental SSE parser (the WHATWG event-stream rules). */
export class SseParser {
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.buffer = "";
    this.lastId = null; // persists across events, as the spec says
    this.resetEvent();
  }

  resetEvent() {
    this.type = "";
    this.data = [];
    this.hasData = false;
    this.idSet = false;
  }

  /** Feed decoded text; dispatches every complete event. */
  push(text) {
    this.buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      let end;
      let next;
      if (cr === -1 && lf === -1) break;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        if (cr === this.buffer.length - 1) break; // a "\r\n" may be split across chunks
        end = cr;
        next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buffer.slice(start, end));
      start = next;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line[0] === ":") {
      this.onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
    }
    if (field === "event") this.type = value;
    else if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (field === "id") {
      if (!value.includes("\0")) {
        this.lastId = value;
        this.idSet = true;
      }
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) this.retry = Number(value);
    }
  }

  dispatch() {
    if (this.hasData) {
      this.onEvent({ id: this.lastId, type: this.type || "message", data: this.data.join("\n") });
    }
    this.resetEvent();
  }
}

/**
 * Keeps one /api/events stream open. Callbacks:
 *   onEvent({id, type, data})  data already JSON-parsed (null if it was not JSON);
 *   onState(state, info)       "connecting" | "live" | "waiting" (info.delay ms) | "unauthorized" | "stopped";
 *   onUnauthorized()           the server answered 401.
 */
export class EventStream {
  constructor({ onEvent, onState = () => {}, onUnauthorized = () => {} }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.lastId = null;
    this.controller = null;
    this.running = false;
    this.failures = 0;
    this.timer = null;
    this.watchdog = null;
    this.retryHint = null;
  }

  /** Start (or restart) from `lastId` (the listing's event_id); null = new events only. */
  start(lastId) {
    if (lastId !== undefined && lastId !== null) this.lastId = String(lastId);
    this.running = true;
    this.failures = 0;
    this.abort();
    this.connect();
  }

  stop() {
    this.running = false;
    this.abort();
    this.onState("stopped");
  }

  abort() {
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.timer = null;
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  /** Silence longer than this (the server comments every 15 s) means the link is dead. */
  armWatchdog() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.controller) this.controller.abort(new DOMException("no data for 45 s", "TimeoutError"));
    }, 45000);
  }

  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    this.onState("connecting");
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
    let gotSomething = false;
    let reason = "the stream ended";
    try {
      this.armWatchdog();
      const response = await fetch("/api/events", { headers, signal: controller.signal, cache: "no-store" });
      if (response.status === 401) {
        this.running = false;
        clearTimeout(this.watchdog);
        this.onState("unauthorized");
        this.onUnauthorized();
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      this.onState("live");
      const parser = new SseParser(
        (raw) => {
          gotSomething = true;
          if (raw.id !== null) this.lastId = raw.id;
          let data = null;
          try {
            data = JSON.parse(raw.data);
          } catch {
            data = null;
          }
          try {
            this.onEvent({ id: raw.id, type: raw.type, data });
          } catch (err) {
            console.error("event handler failed", err);
          }
        },
        () => {
          gotSomething = true;
        },
      );
      parser.lastId = this.lastId;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.armWatchdog();
        parser.push(decoder.decode(value, { stream: true }));
        if (parser.retry) this.retryHint = parser.retry;
        if (gotSomething) this.failures = 0;
      }
    } catch (err) {
      if (controller !== this.controller) return; // replaced by a newer connect()
      reason = err && err.message ? err.message : String(err);
    }
    clearTimeout(this.watchdog);
    if (controller !== this.controller || !this.running) return;
    this.controller = null;
    this.failures += 1;
    const base = Math.max(this.retryHint || 500, 500);
    const delay = Math.min(30000, base * 2 ** Math.min(this.failures - 1, 6)) * (0.75 + Math.random() * 0.5);
    this.onState("waiting", { delay, reason });
    this.timer = setTimeout(() => {
      if (this.running) this.connect();
    }, delay);
  }
}
