/**
 * The connection of one `nats` store and the few JetStream operations the driver is built from: read
 * a subject's last message, publish with an expected last subject sequence, take a consistent
 * snapshot of a subject filter, follow the stream with a consumer. Every failure leaves as a
 * StoreError naming the endpoint.
 *
 * Connecting (on first use; a failed attempt is retried by the next call) also reads the server
 * version and prepares the bucket: a KV bucket with history 1, created with the configured replicas
 * (`--nats-replicas`; an existing bucket keeps its own, with one warning) and, on servers that expire
 * messages themselves (≥ 2.11.2), per-message TTL plus delete markers that watchers see.
 */
import { readFileSync } from "node:fs";
import type { JetStreamClient, JetStreamManager, StreamUpdateConfig } from "@nats-io/jetstream";
import type { ConnectionOptions, NatsConnection } from "@nats-io/transport-node";
import { ClosedError, StoreError, StoreErrorCode, UnavailableError } from "../errors.ts";
import { Backoff, type StoreClock, systemStoreClock } from "../runtime.ts";
import type { StoreLogger, StoreOptions } from "../store.ts";
import { describeTlsFailure, withoutUserinfo } from "../tls.ts";
import { Header, hasServerTtl, parseTimestamp, type RawRecord, streamName } from "./codec.ts";
import { type Feed, type FeedItem, type FeedOptions, openFeed } from "./feed.ts";
import { loadNatsLib, type NatsLib } from "./lib.ts";
import { type Snapshot, takeSnapshot } from "./snapshot.ts";

/** How long the server keeps the marker of an expired key (watchers further behind resync). */
export const MARKER_TTL_MS = 15 * 60_000;
/** Time limit of a `quick` read (see `streamBounds`). */
export const PROBE_TIMEOUT_MS = 1_000;
/** JetStream's "wrong last sequence" error codes: a compare-and-swap lost. */
const WRONG_LAST_SEQUENCE = new Set([10071, 10164]);

/** An open connection and what it learned about the server. */
export interface Connected {
  readonly lib: NatsLib;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** The same manager with a `PROBE_TIMEOUT_MS` time limit, for reads worth repeating soon. */
  readonly probe: JetStreamManager;
  readonly version: string;
  /** The server expires keys and marks the expiry itself (≥ 2.11.2); else clients sweep. */
  readonly serverTtl: boolean;
}

export type ConnectionEvent = "connected" | "reconnect" | "disconnect";

export class NatsClient {
  readonly bucket: string;
  readonly stream: string;
  /** The endpoints as configured, for messages. */
  readonly endpoint: string;
  readonly timeoutMs: number;
  readonly #options: StoreOptions;
  readonly #logger: StoreLogger | undefined;
  readonly #listeners = new Set<(event: ConnectionEvent, connected: Connected) => void>();
  #pending: Promise<Connected> | undefined;
  #current: Connected | undefined;
  #closed = false;
  /** The client libraries, once the first connect loaded them. */
  #lib: NatsLib | undefined;
  /** False between a disconnect and the reconnect: requests sent then are lost by the client. */
  #online = true;
  readonly #onlineWaiters = new Set<() => void>();
  readonly #clock: StoreClock;
  /** Replicas of the bucket when this client creates it. */
  readonly #replicas: number;
  #warnedReplicas = false;

  constructor(options: StoreOptions, bucket: string, replicas: number, clock: StoreClock = systemStoreClock) {
    this.#options = options;
    this.#replicas = replicas;
    this.#clock = clock;
    this.#logger = options.logger;
    this.bucket = bucket;
    this.stream = streamName(bucket);
    this.endpoint = options.endpoints.map(withoutUserinfo).join(",");
    this.timeoutMs = options.requestTimeoutMs ?? 5_000;
  }

  /** The connection, once it was made; undefined before. */
  get current(): Connected | undefined {
    return this.#current;
  }

  /** Connects once for all callers; a failure is reported to the callers waiting and retried later. */
  connection(): Promise<Connected> {
    if (this.#closed) return Promise.reject(new ClosedError("nats"));
    this.#pending ??= this.#connect().catch((err: unknown) => {
      this.#pending = undefined;
      throw err;
    });
    return this.#pending;
  }

  /** Called with "connected" once, then on every disconnect and reconnect. Returns the unsubscriber. */
  onConnection(listener: (event: ConnectionEvent, connected: Connected) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The last message on `subject`, or undefined when it has none. */
  read(subject: string): Promise<RawRecord | undefined> {
    return this.#retrying(async ({ jsm }) => {
      const sm = await jsm.streams.getMessage(this.stream, { last_by_subj: subject });
      if (sm === null) return undefined;
      return {
        subject: sm.subject,
        seq: BigInt(sm.seq),
        timeMs: parseTimestamp(sm.timestamp) ?? Date.now(),
        header: (name: string) => sm.header.get(name),
        data: sm.data,
      };
    });
  }

  /**
   * Publishes to `subject`; with `expect`, only if the subject's last message has that sequence
   * (0: the subject has none). Resolves the new revision, or "conflict" when the expectation failed.
   */
  publish(
    subject: string,
    data: Uint8Array,
    headers: readonly (readonly [string, string])[],
    expect: bigint | undefined,
  ): Promise<bigint | "conflict"> {
    return this.#retrying(async ({ lib, js }) => {
      const h = lib.transport.headers();
      for (const [name, value] of headers) h.set(name, value);
      if (expect !== undefined) h.set(Header.ExpectedLastSubjectSequence, expect.toString());
      try {
        const ack = await js.publish(subject, data, { headers: h, timeout: this.timeoutMs });
        return BigInt(ack.seq);
      } catch (err) {
        if (err instanceof lib.jetstream.JetStreamApiError && WRONG_LAST_SEQUENCE.has(err.code)) {
          return "conflict";
        }
        throw err;
      }
    });
  }

  /**
   * The stream's first and last sequence now. `quick`: within `PROBE_TIMEOUT_MS` instead of the
   * request time limit (a stream electing a leader answers no request sent meanwhile, not even after
   * the election, so a caller that retries anyway learns sooner by asking again).
   */
  streamBounds(
    options: { readonly quick?: boolean } = {},
  ): Promise<{ readonly first: bigint; readonly last: bigint }> {
    return this.#retrying(async ({ jsm, probe }) => {
      const { state } = await (options.quick === true ? probe : jsm).streams.info(this.stream);
      return { first: BigInt(state.first_seq), last: BigInt(state.last_seq) };
    });
  }

  /** The last message of every subject matching `filter`, consistent at a revision (`snapshot.ts`). */
  snapshot(
    filter: string,
    headersOnly: boolean,
    signal?: AbortSignal,
    maxValueBytes?: number | undefined,
  ): Promise<Snapshot> {
    return takeSnapshot(this, filter, headersOnly, signal, maxValueBytes);
  }

  /** How many messages the named consumer still has to deliver, as its info says. */
  consumerPending(name: string): Promise<number> {
    return this.#retrying(async ({ jsm }) => (await jsm.consumers.info(this.stream, name)).num_pending);
  }

  get logger(): StoreLogger | undefined {
    return this.#logger;
  }

  /** Opens a consumer feed (see `feed.ts`); StoreErrors on failure. */
  async feed(
    options: Omit<FeedOptions, "heartbeatMs"> & { readonly heartbeatMs?: number },
    onItem: (item: FeedItem) => void,
  ): Promise<Feed> {
    const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
    return this.#retrying((connected) => openFeed(connected, { ...options, heartbeatMs }, onItem));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#setOnline(true);
    const pending = this.#pending;
    this.#pending = undefined;
    this.#current = undefined;
    const connected = await pending?.catch(() => undefined);
    await connected?.nc.close().catch(() => undefined);
  }

  /** Maps anything a NATS call threw onto a StoreError. */
  fault(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    if (this.#closed) return new ClosedError("nats");
    const message = err instanceof Error ? err.message : String(err);
    // Before the libraries are loaded nothing can have thrown one of their errors.
    const t = this.#lib?.transport;
    const js = this.#lib?.jetstream;
    if (
      (t !== undefined &&
        (err instanceof t.AuthorizationError ||
          err instanceof t.UserAuthenticationExpiredError ||
          err instanceof t.PermissionViolationError)) ||
      /authorization violation|permissions violation|authentication/i.test(message)
    ) {
      return new StoreError(
        StoreErrorCode.Auth,
        `NATS at ${this.endpoint} refused the credentials or the operation: ${message} (check --nats-creds, the NATS user and password (--etcd-username, --etcd-password), or $NATS_TOKEN, and the user's permissions on $JS.API.> and $KV.${this.bucket}.>)`,
        { endpoint: this.endpoint, cause: err },
      );
    }
    if (js !== undefined && err instanceof js.JetStreamApiError) {
      if (err.code === 10039) {
        return new UnavailableError(this.endpoint, `JetStream is not enabled for this account: ${message}`, {
          cause: err,
        });
      }
      return new StoreError(
        StoreErrorCode.Protocol,
        `NATS JetStream at ${this.endpoint} refused a request on bucket ${this.bucket}: ${message} (error code ${err.code})`,
        { endpoint: this.endpoint, cause: err },
      );
    }
    const tls = describeTlsFailure(err, this.#options.tls);
    if (tls !== undefined) {
      return new StoreError(StoreErrorCode.Auth, `NATS at ${this.endpoint}: ${tls}`, {
        endpoint: this.endpoint,
        cause: err,
      });
    }
    if (isNoResponders(err, this.#lib)) {
      return new UnavailableError(
        this.endpoint,
        `JetStream did not answer (is nats-server running with -js, and stream ${this.stream} available?)`,
        { cause: err },
      );
    }
    return new UnavailableError(this.endpoint, message, { cause: err });
  }

  /**
   * Runs `op` on the connection, once it is connected: a request sent while the client reconnects is
   * never answered (nats.js 3.4 loses it), so it waits for the reconnect instead, within the time
   * limit. "No responders" (JetStream still starting) is retried until the time limit too.
   */
  async #retrying<T>(op: (connected: Connected) => Promise<T>): Promise<T> {
    const deadline = performance.now() + this.timeoutMs;
    const backoff = new Backoff(50, 500, this.#clock);
    for (;;) {
      const connected = await this.connection();
      await this.#whenOnline(deadline);
      try {
        return await op(connected);
      } catch (err) {
        if (this.#closed) throw new ClosedError("nats");
        const pause = backoff.delay();
        if (!isNoResponders(err, connected.lib) || performance.now() + pause >= deadline)
          throw this.fault(err);
        await this.#clock.sleep(pause);
      }
    }
  }

  async #connect(): Promise<Connected> {
    const lib = await loadNatsLib();
    this.#lib = lib;
    let nc: NatsConnection;
    try {
      nc = await lib.transport.connect(this.#connectOptions(lib));
    } catch (err) {
      throw this.fault(err);
    }
    try {
      if (this.#closed) throw new ClosedError("nats");
      const version = nc.info?.version ?? "";
      const serverTtl = hasServerTtl(version);
      const js = lib.jetstream.jetstream(nc, { timeout: this.timeoutMs });
      const jsm = await lib.jetstream.jetstreamManager(nc, { timeout: this.timeoutMs });
      const probe = await lib.jetstream.jetstreamManager(nc, {
        timeout: Math.min(PROBE_TIMEOUT_MS, this.timeoutMs),
        checkAPI: false,
      });
      await this.#prepareBucket(lib, js, jsm, serverTtl);
      if (this.#closed) throw new ClosedError("nats");
      const connected: Connected = { lib, nc, js, jsm, probe, version, serverTtl };
      this.#current = connected;
      this.#logger?.info("nats: connected", {
        endpoint: this.endpoint,
        version,
        bucket: this.bucket,
        expiry: serverTtl ? "server (per-message TTL)" : "swept by agents (server older than 2.11.2)",
      });
      void this.#followStatus(connected);
      for (const listener of this.#listeners) listener("connected", connected);
      return connected;
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw this.fault(err);
    }
  }

  #connectOptions(lib: NatsLib): ConnectionOptions {
    const o = this.#options;
    const token = o.token ?? process.env.NATS_TOKEN;
    const credsFile = o.credsFile ?? process.env.NATS_CREDS;
    const options: ConnectionOptions = {
      servers: [...o.endpoints],
      name: "weft",
      timeout: this.timeoutMs,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      reconnectJitter: 250,
      waitOnFirstConnect: false,
      // A dead peer behind a half-open TCP connection is noticed within about 30 s.
      pingInterval: 10_000,
      maxPingOut: 3,
      ...(o.username === undefined || o.username === "" ? {} : { user: o.username, pass: o.password ?? "" }),
      ...(token === undefined || token === "" ? {} : { token }),
    };
    if (credsFile !== undefined && credsFile !== "") {
      let creds: Uint8Array;
      try {
        creds = readFileSync(credsFile);
      } catch (err) {
        throw new StoreError(
          StoreErrorCode.Invalid,
          `cannot read the NATS credentials file ${credsFile}: ${err instanceof Error ? err.message : String(err)} (check --nats-creds)`,
          { cause: err },
        );
      }
      options.authenticator = lib.transport.credsAuthenticator(creds);
    }
    if (o.tls !== undefined) options.tls = { ...o.tls };
    return options;
  }

  /** Creates the bucket if missing and makes an existing one fit: history 1, TTL and markers if served. */
  async #prepareBucket(
    lib: NatsLib,
    js: JetStreamClient,
    jsm: JetStreamManager,
    serverTtl: boolean,
  ): Promise<void> {
    const kvm = new lib.kv.Kvm(js);
    const replicas = this.#replicas;
    try {
      // Reads the bucket's stream, and adds it only if it is missing.
      await kvm.create(this.bucket, {
        history: 1,
        replicas,
        ...(serverTtl ? { markerTTL: MARKER_TTL_MS } : {}),
      });
    } catch (err) {
      if (replicas === 1 || !(err instanceof lib.jetstream.JetStreamApiError)) throw err;
      throw new StoreError(
        StoreErrorCode.Invalid,
        `NATS at ${this.endpoint} refused to create bucket ${this.bucket} (stream ${this.stream}) with ${replicas} replicas (--nats-replicas=${replicas}): ${err.message} (error code ${err.code}); the bucket needs at least ${replicas} JetStream servers in one cluster: lower --nats-replicas, or create the bucket yourself`,
        { endpoint: this.endpoint, cause: err },
      );
    }
    const { config } = await jsm.streams.info(this.stream);
    if (config.num_replicas !== replicas && !this.#warnedReplicas) {
      this.#warnedReplicas = true;
      this.#logger?.warn("nats: the bucket exists with another replica count; using it as it is", {
        stream: this.stream,
        replicas: config.num_replicas,
        requested: replicas,
      });
    }
    const fix: Partial<StreamUpdateConfig> = {};
    if (config.max_msgs_per_subject !== 1) fix.max_msgs_per_subject = 1;
    if (serverTtl && config.allow_msg_ttl !== true) fix.allow_msg_ttl = true;
    if (serverTtl && !((config.subject_delete_marker_ttl ?? 0) > 0)) {
      fix.subject_delete_marker_ttl = lib.transport.nanos(MARKER_TTL_MS);
    }
    if (Object.keys(fix).length > 0) {
      this.#logger?.warn("nats: adjusting the bucket's settings for weft", {
        stream: this.stream,
        settings: Object.keys(fix).join(","),
      });
      await jsm.streams.update(this.stream, fix);
    }
    if (config.max_age > 0) {
      this.#logger?.warn(
        "nats: the bucket has a TTL of its own; keys written without TTL will still expire",
        {
          stream: this.stream,
          maxAgeSeconds: config.max_age / 1e9,
        },
      );
    }
  }

  async #followStatus(connected: Connected): Promise<void> {
    for await (const status of connected.nc.status()) {
      if (this.#closed) return;
      if (status.type === "disconnect" || status.type === "reconnect") {
        this.#setOnline(status.type === "reconnect");
        this.#logger?.info(`nats: ${status.type}`, { endpoint: this.endpoint });
        for (const listener of this.#listeners) listener(status.type, connected);
      }
    }
    // The client gave up (it reconnects forever, so this means rejected credentials or close()).
    if (!this.#closed && this.#current === connected) {
      this.#current = undefined;
      this.#pending = undefined;
      this.#setOnline(true);
    }
  }

  #setOnline(online: boolean): void {
    this.#online = online;
    if (!online) return;
    for (const wake of this.#onlineWaiters) wake();
    this.#onlineWaiters.clear();
  }

  /** Resolves once the client is connected; rejects with UnavailableError at `deadline`. */
  async #whenOnline(deadline: number): Promise<void> {
    if (this.#online) return;
    let wake: () => void = () => undefined;
    const online = new Promise<boolean>((resolve) => {
      wake = () => resolve(true);
      this.#onlineWaiters.add(wake);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()));
    });
    const ok = await Promise.race([online, late]);
    clearTimeout(timer);
    this.#onlineWaiters.delete(wake);
    if (this.#closed) throw new ClosedError("nats");
    if (!ok)
      throw new UnavailableError(
        this.endpoint,
        `disconnected, and not reconnected within ${this.timeoutMs} ms`,
      );
  }
}

/** Idle heartbeat of a consumer feed that names none (watches and snapshots name their own). */
export const HEARTBEAT_MS = 5_000;

function isNoResponders(err: unknown, lib: NatsLib | undefined): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === "JetStreamNotEnabled") return true;
  const t = lib?.transport;
  if (t !== undefined && err instanceof t.NoRespondersError) return true;
  if (t !== undefined && err instanceof t.RequestError && err.isNoResponders()) return true;
  return err.cause !== undefined && err.cause !== err && isNoResponders(err.cause, lib);
}
