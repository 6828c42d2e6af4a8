/**
 * The agent's always-on local control endpoint: the HTTP handler of `server.ts` (`/healthz`, `/readyz`,
 * `/metrics`, `/status`) on a unix socket, default `/run/weft/weft.sock`, so `weft status` and
 * `weft doctor` reach a running agent with no flags while the TCP port stays opt-in as in flanneld.
 *
 * Root-only: the directory is created 0700 and the socket is bound under umask 0177 (then chmod 0600),
 * so there is no moment when another user could connect. A socket file left by an agent that died is
 * removed at start; a socket that still answers belongs to a running agent and is never taken over
 * (two agents on one host fight over the same routes). `stop()` removes the file only while it is
 * still the one this process bound.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { errorMessage, WeftError, WeftErrorCode } from "../errors.ts";
import { agentHandler, type HandlerOptions } from "./server.ts";

export const DEFAULT_CONTROL_SOCKET = "/run/weft/weft.sock";

export interface ControlServer {
  readonly path: string;
  /** Stops listening and removes the socket file (if it is still ours). */
  stop(): Promise<void>;
}

function ioError(path: string, message: string, cause?: unknown): WeftError {
  return new WeftError(WeftErrorCode.Io, message, { path, field: "--control-socket", value: path, cause });
}

/** True when something accepts HTTP on the unix socket `path` within `timeoutMs`. */
export async function socketAnswers(path: string, timeoutMs = 1_000): Promise<boolean> {
  try {
    const res = await fetch("http://localhost/healthz", {
      unix: path,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

async function clearStale(path: string): Promise<void> {
  let kind: "socket" | "other" | "none";
  try {
    kind = lstatSync(path).isSocket() ? "socket" : "other";
  } catch {
    kind = "none";
  }
  if (kind === "none") return;
  if (kind === "other") {
    throw ioError(
      path,
      `${path} exists and is not a socket; remove it or choose another path with --control-socket=PATH`,
    );
  }
  if (await socketAnswers(path)) {
    throw ioError(
      path,
      `another weft agent answers on ${path}: stop it first (two agents on one host fight over the same routes), or give this one its own --control-socket=PATH`,
    );
  }
  rmSync(path, { force: true });
}

/** Serves the agent's endpoints on the unix socket `path` (directory 0700, socket 0600). */
export async function startControl(
  options: HandlerOptions & { readonly path: string },
): Promise<ControlServer> {
  const { path } = options;
  const dir = dirname(path);
  try {
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    }
  } catch (err) {
    throw ioError(path, `cannot create the control socket's directory ${dir}: ${errorMessage(err)}`, err);
  }
  await clearStale(path);
  const umask = process.umask(0o177);
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({ unix: path, fetch: agentHandler(options) });
  } catch (err) {
    throw ioError(path, `cannot listen on the control socket ${path}: ${errorMessage(err)}`, err);
  } finally {
    process.umask(umask);
  }
  chmodSync(path, 0o600);
  const inode = lstatSync(path).ino;
  let stopped = false;
  return {
    path,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop(true);
      try {
        if (lstatSync(path).ino === inode) rmSync(path, { force: true });
      } catch {
        // Already gone.
      }
    },
  };
}
