/**
 * The error of the firewall layer: a `WeftError` with code FIREWALL that also carries the command that
 * failed, its exit code and its stderr, so a log line says what was run, what the tool answered and
 * what to do about it.
 */
import { WeftError, WeftErrorCode } from "../errors.ts";

export interface FirewallErrorDetails {
  /** The argv that failed (`["iptables-restore", "--noflush", "--wait"]`). */
  readonly command?: readonly string[] | undefined;
  /** Its exit code; 127 when the binary was not found. */
  readonly exitCode?: number | undefined;
  readonly stderr?: string | undefined;
  /** The input the command read (the restore or nft script), for `--dry-run`-style reports. */
  readonly input?: string | undefined;
  readonly cause?: unknown;
}

/** A failed iptables or nftables read or change. */
export class FirewallError extends WeftError {
  readonly command: readonly string[];
  readonly exitCode: number | undefined;
  readonly stderr: string;
  readonly input: string | undefined;

  constructor(message: string, details: FirewallErrorDetails = {}) {
    super(WeftErrorCode.Firewall, message, details.cause === undefined ? {} : { cause: details.cause });
    this.name = "FirewallError";
    this.command = details.command ?? [];
    this.exitCode = details.exitCode;
    this.stderr = details.stderr ?? "";
    this.input = details.input;
  }

  /** The error for a command that exited non-zero: names the command, the code, stderr and a hint. */
  static fromCommand(
    what: string,
    command: readonly string[],
    result: { readonly code: number; readonly stderr: string },
    input?: string,
  ): FirewallError {
    const stderr = result.stderr.trim();
    const hint = hintFor(command, result.code, stderr);
    return new FirewallError(
      `${what}: \`${command.join(" ")}\` exited ${result.code}${stderr === "" ? "" : `: ${stderr}`}${hint === "" ? "" : `; ${hint}`}`,
      { command, exitCode: result.code, stderr: result.stderr, input },
    );
  }
}

function hintFor(command: readonly string[], code: number, stderr: string): string {
  const tool = command[0] ?? "";
  if (code === 127)
    return `install ${tool.startsWith("nft") ? "nftables" : "iptables"} or put ${tool} on PATH`;
  if (/permission denied|operation not permitted/i.test(stderr)) {
    return "changing the firewall needs root or CAP_NET_ADMIN";
  }
  if (/another app is currently holding the xtables lock/i.test(stderr)) {
    return "another program holds the xtables lock; the next resync retries";
  }
  return "";
}
