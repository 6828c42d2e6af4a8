/**
 * The HTTP transport shared by the etcd v3 gateway, etcd v2 and Consul drivers: endpoint failover,
 * per-request time limits, client TLS, and network failures mapped to `UnavailableError` naming the
 * endpoint — or, when TLS itself failed on every endpoint (untrusted server certificate, refused
 * handshake, unreadable PEM file), to an AUTH `StoreError` saying what to fix (see `tls.ts`).
 * Protocol knowledge stays in the drivers; this file knows only HTTP.
 */
import { StoreError, StoreErrorCode, UnavailableError } from "./errors.ts";
import type { StoreOptions } from "./store.ts";
import { describeTlsFailure, type TlsFiles } from "./tls.ts";

export interface HttpRequest {
  readonly method: "GET" | "PUT" | "POST" | "DELETE";
  /** Path and query, e.g. `/v3/kv/range`. */
  readonly path: string;
  readonly headers?: Record<string, string> | undefined;
  readonly body?: string | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Overrides the store's request time limit (milliseconds). */
  readonly timeoutMs?: number | undefined;
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
  readonly endpoint: string;
}

/**
 * Takes a body chunk by chunk (a `JsonStreamReader` is one) and makes a value of it, so a large body
 * need not be held whole. May throw: `receive` passes the error on as it is, without failing over.
 */
export interface BodySink<T> {
  push(chunk: Uint8Array): void;
  end(): T;
}

/** An answer read by `receive`. */
export interface HttpReceived<T> extends HttpAnswer {
  /** The sink's value; undefined when `sinkFor` chose none, and `body` holds the text instead ("" else). */
  readonly read: { readonly value: T } | undefined;
}

export interface HttpStream {
  readonly response: Response;
  readonly endpoint: string;
}

const DEFAULT_TIMEOUT_MS = 5_000;

export class HttpEndpoints {
  readonly #endpoints: readonly string[];
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #tls: Record<string, unknown> | undefined;
  readonly #tlsFiles: TlsFiles | undefined;
  readonly #textBodyBytes: number;
  #current = 0;

  /** `textBodyBytes`: see `receive` (default TEXT_BODY_BYTES). */
  constructor(options: StoreOptions, textBodyBytes = TEXT_BODY_BYTES) {
    this.#textBodyBytes = textBodyBytes;
    this.#endpoints = options.endpoints.map((e) => e.replace(/\/+$/, ""));
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#fetch = options.fetch ?? fetch;
    const tls = options.tls;
    this.#tlsFiles = tls;
    // Bun reads the files for each new connection: renewed certificates are used without a restart.
    this.#tls =
      tls === undefined
        ? undefined
        : {
            ...(tls.certFile === undefined ? {} : { cert: Bun.file(tls.certFile) }),
            ...(tls.keyFile === undefined ? {} : { key: Bun.file(tls.keyFile) }),
            ...(tls.caFile === undefined ? {} : { ca: Bun.file(tls.caFile) }),
          };
  }

  /** The endpoint requests currently go to. */
  get endpoint(): string {
    return this.#endpoints[this.#current] ?? "";
  }

  get endpoints(): readonly string[] {
    return this.#endpoints;
  }

  /** Sends the request and reads the whole body, failing over to the next endpoint on network errors. */
  async request(req: HttpRequest): Promise<HttpAnswer> {
    return this.#withFailover(req, async (response, endpoint) => ({
      status: response.status,
      headers: response.headers,
      body: await response.text(),
      endpoint,
    }));
  }

  /**
   * Sends the request and reads the body through the sink `sinkFor` picks from the status and
   * headers, chunk by chunk as it arrives, once it is longer than the constructor's `textBodyBytes`
   * (TEXT_BODY_BYTES unless a test says otherwise). A shorter body, or any body when it picks none, is
   * read as text like `request`: `read` is then undefined. Same time limit as `request`: headers and
   * whole body within it. Network failures and time-outs fail over to the next endpoint with a fresh
   * sink; an error the sink throws ends the call as it is.
   */
  async receive<T>(
    req: HttpRequest,
    sinkFor: (response: Response) => BodySink<T> | undefined,
  ): Promise<HttpReceived<T>> {
    const got = await this.#withFailover(req, async (response, endpoint) => {
      const answer = { status: response.status, headers: response.headers, endpoint };
      const sink = sinkFor(response);
      if (sink === undefined) return { ...answer, body: await response.text(), read: undefined };
      const read = await pump(response, sink, this.#textBodyBytes);
      return "text" in read ? { ...answer, body: read.text, read: undefined } : { ...answer, body: "", read };
    });
    if (got.read !== undefined && "failure" in got.read) throw got.read.failure;
    return { ...got, read: got.read };
  }

  /**
   * Sends the request and returns as soon as the headers arrive; the time limit covers only the
   * headers. The caller reads (and cancels) the body; `req.signal` aborts it.
   */
  async stream(req: HttpRequest): Promise<HttpStream> {
    return this.#withFailover(req, async (response, endpoint) => ({ response, endpoint }), true);
  }

  async #withFailover<T>(
    req: HttpRequest,
    read: (response: Response, endpoint: string) => Promise<T>,
    streaming = false,
  ): Promise<T> {
    const failures: string[] = [];
    let allTls = true;
    for (let attempt = 0; attempt < this.#endpoints.length; attempt++) {
      const index = (this.#current + attempt) % this.#endpoints.length;
      const endpoint = this.#endpoints[index] ?? "";
      const controller = new AbortController();
      const onAbort = () => controller.abort(req.signal?.reason);
      req.signal?.addEventListener("abort", onAbort, { once: true });
      const limit = req.timeoutMs ?? this.#timeoutMs;
      let timedOut = false;
      let keepListener = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, limit);
      try {
        const init: RequestInit & { tls?: unknown } = {
          method: req.method,
          headers: req.headers ?? {},
          signal: controller.signal,
          ...(req.body === undefined ? {} : { body: req.body }),
          ...(this.#tls === undefined ? {} : { tls: this.#tls }),
        };
        const response = await this.#fetch(`${endpoint}${req.path}`, init);
        if (streaming) clearTimeout(timer);
        const result = await read(response, endpoint);
        this.#current = index;
        // A stream's body is still being read: the caller's signal must keep aborting it.
        if (streaming) keepListener = true;
        return result;
      } catch (err) {
        if (req.signal?.aborted) throw err;
        const tls = timedOut ? undefined : describeTlsFailure(err, this.#tlsFiles);
        if (tls === undefined) allTls = false;
        const reason = timedOut ? `no answer within ${limit} ms` : (tls ?? describeNetworkError(err));
        failures.push(`${endpoint}: ${reason}`);
        if (attempt === this.#endpoints.length - 1) {
          const where = this.#endpoints.join(",");
          // Retrying does not fix TLS: say what to change instead of "check that the server runs".
          if (allTls) {
            throw new StoreError(StoreErrorCode.Auth, `store endpoint ${failures.join("; ")}`, {
              endpoint: where,
              cause: err,
            });
          }
          throw new UnavailableError(where, failures.join("; "), { cause: err });
        }
      } finally {
        clearTimeout(timer);
        if (!keepListener) req.signal?.removeEventListener("abort", onAbort);
      }
    }
    throw new UnavailableError("(none)", "no endpoints configured");
  }
}

/**
 * A body up to this long is read as text even where a sink was picked: `JSON.parse` reads it 3–5 times
 * faster than a `JsonStreamReader` (a Consul prefix of 20,000 leases, 6.6 MB: 35–39 against 100–217
 * ms, decode included), and every list of 20,000 leases fits. Only a longer body, such as one with values of a megabyte, goes
 * through the sink, which then holds no more than this much at once.
 */
export const TEXT_BODY_BYTES = 8 << 20;

/**
 * Reads the body: as text when it ends within `textBodyBytes`, else through the sink, fed the chunks
 * buffered so far and then each as it arrives. What the sink throws is returned (`failure`), not
 * thrown, so that it is not taken for a network failure; the rest of the body is then cancelled.
 */
async function pump<T>(
  response: Response,
  sink: BodySink<T>,
  textBodyBytes: number,
): Promise<{ readonly text: string } | { readonly value: T } | { readonly failure: unknown }> {
  const reader = response.body?.getReader();
  let held: Uint8Array[] | undefined = [];
  let size = 0;
  for (;;) {
    const chunk = reader === undefined ? undefined : await reader.read();
    const done = chunk === undefined || chunk.done;
    if (held !== undefined) {
      if (done) return { text: new TextDecoder().decode(Buffer.concat(held, size)) };
      size += chunk.value.length;
      if (size <= textBodyBytes) {
        held.push(chunk.value);
        continue;
      }
    }
    try {
      if (held !== undefined) {
        for (const piece of held) sink.push(piece);
        held = undefined;
      }
      if (done) return { value: sink.end() };
      sink.push(chunk.value);
    } catch (failure) {
      reader?.cancel().catch(() => {});
      return { failure };
    }
  }
}

function describeNetworkError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return typeof code === "string" ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
