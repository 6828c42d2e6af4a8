/**
 * sd_notify(3) for weft: READY=1, STATUS=…, WATCHDOG=1 and STOPPING=1 as datagrams to
 * $NOTIFY_SOCKET. Without NOTIFY_SOCKET every method does nothing. A failed send is logged once and
 * never stops the agent: systemd's bookkeeping must not take the data path down.
 */
import type { Logger } from "../log.ts";
import {
  extendIntervalMs,
  extendTimeoutMessage,
  NotifyMessage,
  parseNotifyEnv,
  statusMessage,
} from "./protocol.ts";
import { UnixDatagramSocket } from "./unix-dgram.ts";

export interface NotifierOptions {
  readonly env: Record<string, string | undefined>;
  readonly pid: number;
  readonly log: Logger;
  /** Checked before each WATCHDOG=1; a false answer withholds it so systemd's watchdog fires. */
  readonly healthy?: () => boolean;
  /** Sends datagrams; defaults to a unix datagram socket (tests inject a fake). */
  readonly send?: (socket: string, message: string) => void;
}

export class Notifier {
  readonly #socket: string | undefined;
  readonly #watchdogMs: number | undefined;
  readonly #o: NotifierOptions;
  #dgram: UnixDatagramSocket | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #extendTimer: ReturnType<typeof setInterval> | undefined;
  #failed = false;
  #readySent = false;

  constructor(options: NotifierOptions) {
    this.#o = options;
    const parsed = parseNotifyEnv(options.env, options.pid);
    this.#socket = parsed.socket;
    this.#watchdogMs = this.#socket === undefined ? undefined : parsed.watchdogMs;
  }

  get enabled(): boolean {
    return this.#socket !== undefined;
  }

  /** WATCHDOG=1 interval in ms, or undefined when systemd asked for no watchdog. */
  get watchdogMs(): number | undefined {
    return this.#watchdogMs;
  }

  /** READY=1, at most once per process; ends the start-timeout extensions. */
  ready(): void {
    if (this.#readySent) return;
    this.#readySent = true;
    this.#stopExtending();
    this.#send(NotifyMessage.ready);
  }

  status(text: string): void {
    this.#send(statusMessage(text));
  }

  watchdog(): void {
    this.#send(NotifyMessage.watchdog);
  }

  stopping(): void {
    this.stopWatchdog();
    this.#stopExtending();
    this.#send(NotifyMessage.stopping);
  }

  /** Sends WATCHDOG=1 every WATCHDOG_USEC/2 while `healthy()` says so; a stuck event loop sends nothing. */
  startWatchdog(): void {
    const interval = this.#watchdogMs;
    if (interval === undefined || this.#timer !== undefined) return;
    const tick = () => {
      if (this.#o.healthy?.() ?? true) this.watchdog();
    };
    tick();
    this.#timer = setInterval(tick, interval);
    this.#timer.unref?.();
  }

  /**
   * Until READY=1: `EXTEND_TIMEOUT_USEC=` now and every interval (see `extendIntervalMs`), so an agent
   * waiting for its store or network config is not killed by TimeoutStartSec and restarted in a loop.
   */
  startExtending(): void {
    if (this.#socket === undefined || this.#readySent || this.#extendTimer !== undefined) return;
    const interval = extendIntervalMs(this.#o.env);
    const tick = () => this.#send(extendTimeoutMessage(3 * interval));
    tick();
    this.#extendTimer = setInterval(tick, interval);
    this.#extendTimer.unref?.();
  }

  #stopExtending(): void {
    if (this.#extendTimer !== undefined) clearInterval(this.#extendTimer);
    this.#extendTimer = undefined;
  }

  stopWatchdog(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    this.stopWatchdog();
    this.#stopExtending();
    this.#dgram?.close();
    this.#dgram = undefined;
  }

  #send(message: string): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    try {
      if (this.#o.send !== undefined) {
        this.#o.send(socket, message);
      } else {
        this.#dgram ??= UnixDatagramSocket.open();
        this.#dgram.sendTo(socket, new TextEncoder().encode(message));
      }
    } catch (err) {
      if (this.#failed) return;
      this.#failed = true;
      this.#o.log.warn("cannot notify systemd", { socket, message, error: err });
    }
  }
}

/**
 * Sends `STATUS=` when the text changes, at most once per `minIntervalMs`; a change inside the
 * window is sent when the window ends.
 */
export class StatusThrottle {
  readonly #send: (text: string) => void;
  readonly #minIntervalMs: number;
  #lastText: string | undefined;
  #lastAt = Number.NEGATIVE_INFINITY;
  #pending: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(send: (text: string) => void, minIntervalMs = 1_000) {
    this.#send = send;
    this.#minIntervalMs = minIntervalMs;
  }

  update(text: string, now = Date.now()): void {
    if (text === this.#lastText && this.#pending === undefined) return;
    const wait = this.#lastAt + this.#minIntervalMs - now;
    if (wait <= 0) {
      this.#emit(text, now);
      return;
    }
    this.#pending = text;
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        const pending = this.#pending;
        if (pending !== undefined) this.#emit(pending, Date.now());
      }, wait);
      this.#timer.unref?.();
    }
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = undefined;
  }

  #emit(text: string, now: number): void {
    this.#pending = undefined;
    if (text === this.#lastText) return;
    this.#lastText = text;
    this.#lastAt = now;
    this.#send(text);
  }
}
