/**
 * The sd_notify(3) protocol without I/O: reading NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID,
 * building the message lines, and encoding the `struct sockaddr_un` the datagram is sent to.
 */
import { WeftError, WeftErrorCode } from "../errors.ts";

export const AF_UNIX = 1;
/** sizeof(sun_path) on Linux. */
export const SUN_PATH_MAX = 108;

export interface NotifyEnv {
  /** The socket path as given (`/run/systemd/notify`, or `@name` for the abstract namespace). */
  readonly socket: string | undefined;
  /** Interval between WATCHDOG=1 messages in ms (half of WATCHDOG_USEC), when the watchdog is ours. */
  readonly watchdogMs: number | undefined;
}

export function parseNotifyEnv(env: Record<string, string | undefined>, pid: number): NotifyEnv {
  const raw = env.NOTIFY_SOCKET;
  const socket = raw === undefined || raw === "" ? undefined : raw;
  let watchdogMs: number | undefined;
  const usecText = env.WATCHDOG_USEC;
  const pidText = env.WATCHDOG_PID;
  const forUs = pidText === undefined || pidText === "" || Number(pidText) === pid;
  if (usecText !== undefined && /^[0-9]+$/.test(usecText) && forUs) {
    const usec = Number(usecText);
    if (usec > 0) watchdogMs = Math.max(1, Math.floor(usec / 2000));
  }
  return { socket, watchdogMs };
}

export const NotifyMessage = {
  ready: "READY=1",
  watchdog: "WATCHDOG=1",
  stopping: "STOPPING=1",
} as const;

/**
 * How often a starting agent asks systemd for more start time (`EXTEND_TIMEOUT_USEC=`), in ms: 30 s,
 * or `WEFT_NOTIFY_EXTEND_MS` (a positive integer; tests shorten it). Each message asks for three
 * intervals, so one lost datagram never lets TimeoutStartSec (systemd's default 90 s) expire.
 */
export function extendIntervalMs(env: Record<string, string | undefined>): number {
  const text = env.WEFT_NOTIFY_EXTEND_MS;
  if (text !== undefined && /^[0-9]+$/.test(text) && Number(text) > 0) return Number(text);
  return 30_000;
}

/** `EXTEND_TIMEOUT_USEC=<µs>`: systemd extends the start timeout to that much from now. */
export function extendTimeoutMessage(ms: number): string {
  return `EXTEND_TIMEOUT_USEC=${Math.round(ms * 1000)}`;
}

/** `STATUS=<text>`; newlines would start a new assignment, so they become spaces. */
export function statusMessage(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, " ")}`;
}

/** The STATUS text for a lease, peer count and route count: `subnet 10.5.1.0/24, 2 peers, 2 routes`. */
export function statusText(subnet: string | undefined, peers: number, routes: number): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const head = subnet === undefined ? "no subnet lease" : `subnet ${subnet}`;
  return `${head}, ${plural(peers, "peer")}, ${plural(routes, "route")}`;
}

/**
 * `struct sockaddr_un` for `path` and the address length to pass to sendto/bind. A leading `@` means
 * the abstract namespace: sun_path starts with a NUL and the length covers only the name's bytes.
 */
export function encodeSockaddrUn(path: string): { bytes: Uint8Array; length: number } {
  const abstract = path.startsWith("@");
  const name = new TextEncoder().encode(abstract ? path.slice(1) : path);
  // Path sockets: the name plus its terminating NUL; abstract ones: the leading NUL plus the name.
  const pathBytes = name.length + 1;
  if (name.length === 0 || pathBytes > SUN_PATH_MAX) {
    throw new WeftError(
      WeftErrorCode.Io,
      `unix socket address ${JSON.stringify(path)} must be 1 to ${SUN_PATH_MAX - 1} bytes long`,
      { field: "NOTIFY_SOCKET", value: path },
    );
  }
  const bytes = new Uint8Array(2 + SUN_PATH_MAX);
  new Uint16Array(bytes.buffer, 0, 1)[0] = AF_UNIX; // sa_family is in host byte order
  bytes.set(name, abstract ? 3 : 2);
  return { bytes, length: 2 + pathBytes };
}
