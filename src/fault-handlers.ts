/**
 * Last-resort handlers for errors nothing else caught; `main` installs them before anything runs.
 *
 * - An unhandled rejection is logged as one line (`unhandled rejection`) and weft keeps running: every
 *   loop of the agent catches its own errors, so a stray rejection comes from a side task that missed
 *   its catch (a subnet.env write, a detached apply) and the loops that keep routes and the lease are
 *   still running.
 * - An uncaught exception is logged as one line (`uncaught exception; exiting`) and the process exits
 *   with status 70 (EX_SOFTWARE): a synchronous throw out of an event callback can leave a socket or
 *   a loop half-updated with nothing left to notice it. Exiting is safe because routes, firewall
 *   rules and the lease stay in place; `Restart=always` starts a fresh agent 2 s later, which finds
 *   its lease and subnet again.
 */
import { createLogger, type Logger } from "./log.ts";

/** The exit status after an uncaught exception (sysexits' EX_SOFTWARE). */
export const UNCAUGHT_EXIT_CODE = 70;

/** The part of `process` the handlers use (a fake in tests). */
export interface FaultTarget {
  on(event: "unhandledRejection", listener: (reason: unknown) => void): unknown;
  on(event: "uncaughtException", listener: (err: Error) => void): unknown;
  off(event: "unhandledRejection", listener: (reason: unknown) => void): unknown;
  off(event: "uncaughtException", listener: (err: Error) => void): unknown;
}

export interface FaultHandlers {
  /** Logs through `log` from now on (the agent's logger, once its flags chose the format). */
  useLogger(log: Logger): void;
  uninstall(): void;
}

export interface FaultHandlerOptions {
  readonly target?: FaultTarget;
  readonly log?: Logger;
  readonly exit?: (code: number) => void;
}

/** The error's message, its type and the first frame of its stack, as log fields. */
export function faultFields(reason: unknown): Record<string, unknown> {
  if (!(reason instanceof Error)) return { error: String(reason) };
  const frame = reason.stack
    ?.split("\n")
    .map((line) => line.trim())
    .find((line) => line.startsWith("at "));
  return {
    error: reason.message,
    type: reason.name,
    ...(frame === undefined ? {} : { at: frame.slice(3) }),
  };
}

export function installFaultHandlers(options: FaultHandlerOptions = {}): FaultHandlers {
  const target: FaultTarget = options.target ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let log = options.log ?? createLogger();
  const onRejection = (reason: unknown) => {
    log.error("unhandled rejection; still running", faultFields(reason));
  };
  const onException = (err: Error) => {
    log.error("uncaught exception; exiting", { ...faultFields(err), exitCode: UNCAUGHT_EXIT_CODE });
    exit(UNCAUGHT_EXIT_CODE);
  };
  target.on("unhandledRejection", onRejection);
  target.on("uncaughtException", onException);
  return {
    useLogger: (next) => {
      log = next;
    },
    uninstall: () => {
      target.off("unhandledRejection", onRejection);
      target.off("uncaughtException", onException);
    },
  };
}
