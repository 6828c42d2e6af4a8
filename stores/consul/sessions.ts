/**
 * The sessions of the consul driver: every key with a TTL is locked by a session of its own
 * (Behavior=delete, no node checks, 1 ms lock delay) lasting half the key's TTL, since Consul ends a
 * session twice its TTL after the last renewal. When the server's shortest session is too long for
 * the key's TTL, the book destroys the session (and so the key) itself when the TTL runs out.
 */
import { hostname } from "node:os";
import type { HttpAnswer, HttpRequest } from "../http.ts";
import { type StoreClock, systemStoreClock } from "../runtime.ts";
import type { StoreLogger } from "../store.ts";
import {
  failureError,
  parseJson,
  protocol,
  sessionRequest,
  sessionTtlBounds,
  sessionTtlMs,
} from "./codec.ts";

/** A session this client created to hold one key. */
export interface OwnSession {
  readonly id: string;
  readonly key: string;
  readonly sessionMs: number;
  keyTtlMs: number;
  /** When the key's TTL runs out unless renewed (ms since the epoch, on the store's clock). */
  deadline: number;
  /**
   * Set when the server would keep the key longer than its TTL: aborting it cancels the wait on the
   * store's clock that destroys the session on time.
   */
  timer: AbortController | undefined;
}

/** What the book needs besides the transport. */
export interface SessionBookOptions {
  readonly logger?: StoreLogger | undefined;
  /** The store's clock: deadlines and the waits that end sessions on time (default: the system clock). */
  readonly clock?: StoreClock | undefined;
}

export class SessionBook {
  readonly #send: (req: HttpRequest, signal?: AbortSignal) => Promise<HttpAnswer>;
  readonly #logger: StoreLogger | undefined;
  readonly #clock: StoreClock;
  readonly #sessions = new Map<string, OwnSession>();
  /** The server's smallest session TTL, learned from its refusal of a shorter one. */
  #minMs = 0;
  #closed = false;

  constructor(
    send: (req: HttpRequest, signal?: AbortSignal) => Promise<HttpAnswer>,
    options: SessionBookOptions = {},
  ) {
    this.#send = send;
    this.#logger = options.logger;
    this.#clock = options.clock ?? systemStoreClock;
  }

  /** The session of this client with this id, if it still counts it as holding its key. */
  get(id: string | undefined): OwnSession | undefined {
    return id === undefined ? undefined : this.#sessions.get(id);
  }

  /** The session length a key TTL gets on this server. */
  sessionMs(keyTtlMs: number): number {
    return sessionTtlMs(keyTtlMs, this.#minMs);
  }

  /** Whole seconds left on the key's TTL, when this client holds it. */
  secondsLeft(id: string | undefined): number | undefined {
    const mine = this.get(id);
    return mine === undefined
      ? undefined
      : Math.max(0, Math.ceil((mine.deadline - this.#clock.now()) / 1_000));
  }

  /** Creates a session for `key` (not yet owned), learning the server's minimum TTL from a refusal. */
  async create(key: string, keyTtlMs: number): Promise<OwnSession> {
    for (;;) {
      const sessionMs = this.sessionMs(keyTtlMs);
      const answer = await this.#send({
        method: "PUT",
        path: "/v1/session/create",
        body: sessionRequest(`weft ${hostname()}`, sessionMs),
      });
      if (answer.status !== 200) {
        const bounds = sessionTtlBounds(answer.body);
        if (bounds !== undefined && bounds.minMs > this.#minMs && bounds.minMs > sessionMs) {
          this.#minMs = bounds.minMs;
          continue;
        }
        throw failureError(answer.status, answer.body, answer.endpoint, key);
      }
      const body = parseJson(answer.body, answer.endpoint) as { ID?: unknown } | null;
      if (typeof body?.ID !== "string") {
        throw protocol(answer.endpoint, `a session without ID: ${answer.body.slice(0, 200)}`);
      }
      const deadline = this.#clock.now() + keyTtlMs;
      return { id: body.ID, key, sessionMs, keyTtlMs, deadline, timer: undefined };
    }
  }

  /** Renews a session of this client; false (and forgotten) when the server no longer knows it. */
  async renew(session: OwnSession): Promise<boolean> {
    const answer = await this.#send({ method: "PUT", path: `/v1/session/renew/${session.id}` });
    if (answer.status === 404) {
      this.disown(session);
      this.#logger?.warn("consul session is gone, and the key it held with it", { key: session.key });
      return false;
    }
    if (answer.status !== 200) throw failureError(answer.status, answer.body, answer.endpoint, session.key);
    return true;
  }

  /** Whether a session (anyone's) still exists. */
  async lives(id: string, signal: AbortSignal): Promise<boolean> {
    const answer = await this.#send({ method: "GET", path: `/v1/session/info/${id}` }, signal);
    // A token without session:read cannot tell: the delete is then reported as a plain delete.
    if (answer.status === 403) return true;
    if (answer.status !== 200) throw failureError(answer.status, answer.body, answer.endpoint);
    const sessions = parseJson(answer.body, answer.endpoint);
    return Array.isArray(sessions) && sessions.length > 0;
  }

  /** Destroys a session (and, Behavior=delete, the key it holds); a failure leaves it to expire. */
  async destroy(id: string): Promise<void> {
    if (this.#closed) return;
    try {
      const answer = await this.#send({ method: "PUT", path: `/v1/session/destroy/${id}` });
      if (answer.status !== 200) throw failureError(answer.status, answer.body, answer.endpoint);
    } catch (err) {
      this.#logger?.debug("consul: could not destroy a session; it will expire by itself", {
        session: id,
        error: String(err),
      });
    }
  }

  own(session: OwnSession): void {
    this.#sessions.set(session.id, session);
    this.arm(session);
  }

  disown(session: OwnSession): void {
    session.timer?.abort();
    session.timer = undefined;
    if (this.#sessions.get(session.id) === session) this.#sessions.delete(session.id);
  }

  /** Restarts the key's TTL; when the server would keep the key longer, ends its session on time. */
  arm(session: OwnSession): void {
    session.timer?.abort();
    session.timer = undefined;
    session.deadline = this.#clock.now() + session.keyTtlMs;
    if (this.#closed || 2 * session.sessionMs <= session.keyTtlMs) return;
    const timer = new AbortController();
    session.timer = timer;
    void this.#clock.sleep(session.keyTtlMs, timer.signal, { unref: true }).then(() => {
      // Aborted: renewed (re-armed), disowned, or the store closed.
      if (timer.signal.aborted || this.#closed) return;
      this.disown(session);
      void this.destroy(session.id);
    });
  }

  /** Cancels every wait. The sessions stay on the server and expire by themselves. */
  close(): void {
    this.#closed = true;
    for (const session of this.#sessions.values()) session.timer?.abort();
    this.#sessions.clear();
  }
}
