/**
 * How `weft status` and `weft doctor` reach the running agent: its control socket (default
 * `/run/weft/weft.sock`, `--control-socket=PATH` to override), or its opt-in TCP port when
 * `--healthz-port` is given. Every failure is a `WeftError` IO saying what to check.
 */
import { accessSync, constants, lstatSync } from "node:fs";
import type { AgentFlags } from "../config/flags.ts";
import { errorMessage, WeftError, WeftErrorCode } from "../errors.ts";
import { DEFAULT_CONTROL_SOCKET } from "../http/control.ts";

export type AgentAddress =
  | { readonly kind: "socket"; readonly path: string }
  | { readonly kind: "http"; readonly base: string; readonly port: number };

/**
 * Takes `--control-socket=PATH` (or `--control-socket PATH`, one or two dashes) out of `argv`, so the
 * rest can go to `parseFlags`. The last one wins; without one, a non-empty `WEFT_CONTROL_SOCKET`.
 */
export function takeControlSocket(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): {
  readonly path: string | undefined;
  readonly rest: string[];
} {
  let path: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const match = /^--?control-socket(?:=(.*))?$/.exec(arg);
    if (match === null) {
      rest.push(arg);
      continue;
    }
    const value = match[1] ?? argv[++i];
    if (value === undefined || value === "") {
      throw new WeftError(WeftErrorCode.FlagInvalid, "--control-socket needs a socket path", {
        field: "--control-socket",
      });
    }
    path = value;
  }
  const fromEnv = env.WEFT_CONTROL_SOCKET;
  return { path: path ?? (fromEnv === undefined || fromEnv === "" ? undefined : fromEnv), rest };
}

/** The control socket unless `--healthz-port` (flag or FLANNELD_HEALTHZ_PORT) names the TCP port. */
export function agentAddress(flags: AgentFlags, controlSocket: string | undefined): AgentAddress {
  if (controlSocket === undefined && flags.healthzPort > 0) {
    const host = flags.healthzIp === "0.0.0.0" ? "127.0.0.1" : flags.healthzIp;
    return {
      kind: "http",
      base: `http://${host.includes(":") ? `[${host}]` : host}:${flags.healthzPort}`,
      port: flags.healthzPort,
    };
  }
  return { kind: "socket", path: controlSocket ?? DEFAULT_CONTROL_SOCKET };
}

/** Where the address is, for messages. */
export function describeAddress(address: AgentAddress): string {
  return address.kind === "socket" ? address.path : address.base;
}

function io(message: string, cause?: unknown): WeftError {
  return new WeftError(WeftErrorCode.Io, message, { cause });
}

/** Why the socket cannot be used, before connecting: absent, not a socket, or not ours to open. */
function checkSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw io(
        `is weft running? the socket ${path} does not exist (start weft; if it runs with other settings, pass its --control-socket=PATH, or --healthz-port=N for its HTTP port)`,
        err,
      );
    }
    if ((err as NodeJS.ErrnoException).code === "EACCES") {
      throw io(`permission denied reading ${path}: the control socket is root-only; run this as root`, err);
    }
    throw io(`cannot read ${path}: ${errorMessage(err)}`, err);
  }
  if (!isSocket) throw io(`${path} is not a socket; pass the agent's --control-socket=PATH`);
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
  } catch (err) {
    throw io(
      `permission denied on ${path}: the control socket is root-only (mode 0600); run this as root (sudo)`,
      err,
    );
  }
}

/** GET `path` from the agent; resolves with any HTTP answer, throws WeftError IO when none comes. */
export async function getFromAgent(
  address: AgentAddress,
  path: string,
  timeoutMs = 5_000,
): Promise<{ readonly status: number; readonly text: string }> {
  if (address.kind === "socket") checkSocket(address.path);
  const url = address.kind === "socket" ? `http://localhost${path}` : `${address.base}${path}`;
  const init: RequestInit & { unix?: string } = {
    signal: AbortSignal.timeout(timeoutMs),
    ...(address.kind === "socket" ? { unix: address.path } : {}),
  };
  try {
    const res = await fetch(url, init);
    return { status: res.status, text: await res.text() };
  } catch (err) {
    if (address.kind === "socket") {
      throw io(
        `no agent answers on ${address.path} (${errorMessage(err)}): is weft running? a socket left by a stopped agent is removed when weft starts again`,
        err,
      );
    }
    throw io(
      `no agent answers at ${url} (${errorMessage(err)}); is weft running with --healthz-port=${address.port}?`,
      err,
    );
  }
}
