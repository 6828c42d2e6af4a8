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
  #current = 0;

  constructor(options: StoreOptions) {
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

function describeNetworkError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return typeof code === "string" ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
