/**
 * `weft status [--control-socket=PATH] [--healthz-ip=IP --healthz-port=N] [--json]`: asks the running
 * agent (its /status endpoint, on the control socket by default, see `agent-client.ts`) and prints
 * store, lease, backend, readiness, last apply and every peer with its route, as a table, or the raw
 * JSON with --json for scripts. Every value may come from the store (keys and lease values anyone with
 * store access writes), so control characters are printed as escapes, never sent to the terminal.
 */
import { parseFlags } from "../config/flags.ts";
import { errorMessage } from "../errors.ts";
import { agentAddress, describeAddress, getFromAgent, takeControlSocket } from "./agent-client.ts";
import { printable, printableJson } from "./printable.ts";

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
    /** Entries the kernel refuses (older agents do not send it). */
    refused?: readonly string[];
  } | null;
  readonly ready: { ready: boolean; reason: string };
}

/** Aligned columns; every cell is made printable first (values come from the store). */
function columns(cells: readonly (readonly string[])[]): string[] {
  const rows = cells.map((r) => r.map((c) => printable(String(c))));
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

/** What an agent answers before it runs (`AgentSource` in agent/status.ts): only why it is not ready. */
interface StartingStatus {
  readonly ready: { ready: boolean; reason: string };
}

/** The human-readable report of a /status answer. */
export function renderStatus(s: AgentStatus | StartingStatus): string {
  if (!("peers" in s))
    return `${columns([["ready", s.ready.ready ? "yes" : `no: ${s.ready.reason}`]]).join("\n")}\n`;
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
  const refused = s.lastApply?.refused ?? [];
  return [
    ...head,
    "",
    ...(s.peers.length === 0 ? ["no peers"] : peers),
    ...errors.map((e) => `error: ${printable(String(e))}`),
    ...refused.map((e) => `refused by the kernel (retried every 10 s): ${printable(String(e))}`),
    "",
  ].join("\n");
}

export async function runStatus(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  const json = argv.includes("--json");
  try {
    const { path, rest } = takeControlSocket(
      argv.filter((a) => a !== "--json"),
      env,
    );
    const address = agentAddress(parseFlags(rest, env), path);
    const res = await getFromAgent(address, "/status");
    if (res.status !== 200) {
      process.stderr.write(
        `weft status: ${describeAddress(address)} answered ${res.status}: ${res.text.trim()}\n`,
      );
      return 1;
    }
    process.stdout.write(
      json ? `${printableJson(res.text.trim())}\n` : renderStatus(JSON.parse(res.text) as AgentStatus),
    );
    return 0;
  } catch (err) {
    process.stderr.write(`weft status: ${errorMessage(err)}\n`);
    return 1;
  }
}
