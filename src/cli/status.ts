/**
 * `weft status [--healthz-ip=IP] [--healthz-port=N] [--json]`: asks the running agent (its /status
 * endpoint, enabled with --healthz-port) and prints store, lease, backend, readiness, last apply and
 * every peer with its route, as a table, or the raw JSON with --json for scripts.
 */
import { parseFlags } from "../config/flags.ts";
import { errorMessage, WeftError, WeftErrorCode } from "../errors.ts";

interface PeerStatus {
  readonly subnet: string;
  readonly publicIP: string;
  readonly backend: string;
  readonly route: boolean;
  /** `<gateway> dev <device>` of the peer's route (older agents do not send it). */
  readonly via?: string | null;
  readonly skipped: string | null;
}

interface AgentStatus {
  readonly store: string;
  readonly prefix: string;
  readonly backend: string;
  readonly device?: string | null;
  readonly backendData?: unknown;
  readonly mtu?: number;
  readonly neighbours?: number;
  readonly fdbEntries?: number;
  readonly network: string;
  readonly externalInterface: string;
  readonly publicIP: string;
  readonly lease: { subnet: string; key: string; reservation: boolean; expiresAt: string | null } | null;
  readonly peers: readonly PeerStatus[];
  readonly routes: number;
  readonly lastApply: {
    at: string;
    ok: boolean;
    replaced: number;
    deleted: number;
    durationMs: number;
    errors: readonly string[];
  } | null;
  readonly ready: { ready: boolean; reason: string };
}

function columns(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}

function backendLine(s: AgentStatus): string {
  const on = `on ${s.externalInterface} (PublicIP ${s.publicIP})`;
  if (s.device === undefined || s.device === null) return `${s.backend} ${on}`;
  const data = s.backendData as { VNI?: unknown; VtepMAC?: unknown } | null | undefined;
  return `${s.backend} ${on}: ${s.device}, VNI ${String(data?.VNI)}, VtepMAC ${String(data?.VtepMAC)}, MTU ${s.mtu ?? "?"}`;
}

/** The human-readable report of a /status answer. */
export function renderStatus(s: AgentStatus): string {
  const lease =
    s.lease === null
      ? "none (not acquired yet)"
      : `${s.lease.subnet}  ${s.lease.reservation ? "reservation (no expiry)" : `expires ${s.lease.expiresAt ?? "?"}`}`;
  const apply =
    s.lastApply === null
      ? "not yet"
      : `${s.lastApply.at}  ${s.lastApply.ok ? "ok" : "FAILED"}, ${s.lastApply.replaced} replaced, ${s.lastApply.deleted} deleted, ${s.lastApply.durationMs} ms`;
  const head = columns([
    ["store", `${s.store}  ${s.prefix}`],
    ["network", s.network],
    ["lease", lease],
    ["backend", backendLine(s)],
    ["ready", s.ready.ready ? "yes" : `no: ${s.ready.reason}`],
    ["last apply", apply],
    [
      "routes",
      s.device === undefined || s.device === null
        ? String(s.routes)
        : `${s.routes}, ${s.neighbours ?? 0} neighbours and ${s.fdbEntries ?? 0} FDB entries on ${s.device}`,
    ],
  ]);
  const peers = columns([
    ["PEER SUBNET", "PUBLIC IP", "BACKEND", "ROUTE"],
    ...s.peers.map((p) => [
      p.subnet,
      p.publicIP,
      p.backend,
      p.route ? `via ${p.via ?? p.publicIP}` : `none: ${p.skipped ?? "pending"}`,
    ]),
  ]);
  const errors = s.lastApply?.errors ?? [];
  return [
    ...head,
    "",
    ...(s.peers.length === 0 ? ["no peers"] : peers),
    ...errors.map((e) => `error: ${e}`),
    "",
  ].join("\n");
}

export async function runStatus(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  const json = argv.includes("--json");
  try {
    const flags = parseFlags(
      argv.filter((a) => a !== "--json"),
      env,
    );
    if (flags.healthzPort === 0) {
      process.stderr.write(
        "weft status: the agent's HTTP endpoint is off; start weft with --healthz-port=N and pass the same --healthz-port here\n",
      );
      return 1;
    }
    const host = flags.healthzIp === "0.0.0.0" ? "127.0.0.1" : flags.healthzIp;
    const url = `http://${host.includes(":") ? `[${host}]` : host}:${flags.healthzPort}/status`;
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) }).catch((err: unknown) => {
      throw new WeftError(
        WeftErrorCode.Io,
        `no agent answers at ${url} (${errorMessage(err)}); is weft running with --healthz-port=${flags.healthzPort}?`,
        { cause: err },
      );
    });
    const text = await res.text();
    if (!res.ok) {
      process.stderr.write(`weft status: ${url} answered ${res.status}: ${text.trim()}\n`);
      return 1;
    }
    process.stdout.write(json ? `${text.trim()}\n` : renderStatus(JSON.parse(text) as AgentStatus));
    return 0;
  } catch (err) {
    process.stderr.write(`weft status: ${errorMessage(err)}\n`);
    return 1;
  }
}
