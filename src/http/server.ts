/**
 * The agent's HTTP endpoints, served on two listeners by one handler (`agentHandler`):
 * - the TCP port, only with `--healthz-port` > 0, like flanneld (`startHttp`);
 * - the always-on, root-only control socket (`control.ts`), which `weft status` and `weft doctor` use.
 *
 * - `/healthz`: 200 while the process runs;
 * - `/readyz`: 200 only when the lease is held and the first full apply succeeded, else 503 with why;
 * - `/metrics`: Prometheus text;
 * - `/status`: the agent's state as JSON (for `weft status`).
 */
import type { Server } from "bun";
import type { Metrics } from "../metrics.ts";

export interface Readiness {
  readonly ready: boolean;
  /** Why not, for a person: "no lease yet", "first apply pending". */
  readonly reason: string;
}

export interface StatusSource {
  readiness(): Readiness;
  status(): unknown;
}

export interface HandlerOptions {
  readonly metrics: Metrics;
  readonly source: StatusSource;
}

/** The one request handler behind every listener of the agent. */
export function agentHandler(options: HandlerOptions): (request: Request) => Response {
  return (request) => {
    const path = new URL(request.url).pathname;
    switch (path) {
      case "/healthz":
        return new Response("weft is running\n");
      case "/readyz": {
        const r = options.source.readiness();
        return new Response(r.ready ? "weft is ready\n" : `weft is not ready: ${r.reason}\n`, {
          status: r.ready ? 200 : 503,
        });
      }
      case "/metrics":
        return new Response(options.metrics.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      case "/status":
        return Response.json(options.source.status(), {
          headers: { "cache-control": "no-store" },
        });
      default:
        return new Response("not found: try /healthz, /readyz, /metrics or /status\n", { status: 404 });
    }
  };
}

export function startHttp(
  options: HandlerOptions & { readonly hostname: string; readonly port: number },
): Server<undefined> {
  return Bun.serve({ hostname: options.hostname, port: options.port, fetch: agentHandler(options) });
}
