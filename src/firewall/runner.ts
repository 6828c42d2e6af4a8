/**
 * How the firewall layer runs `iptables-save`, `iptables-restore` and `nft`: through an injected
 * `CommandRunner`, so the agent runs them directly in its own namespace while tests prefix
 * `ip netns exec <ns>` and unit tests record or fake them. The runner never throws for a non-zero
 * exit; callers turn that into a `FirewallError` with the command and stderr.
 */

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `argv` to completion, feeding `stdin` when given. Resolves with code 127 if the binary is absent. */
export type CommandRunner = (argv: readonly string[], stdin?: string) => Promise<CommandResult>;

export interface SpawnRunnerOptions {
  /** Kill the command after this long (default 30 s; iptables-restore --wait may queue on the lock). */
  readonly timeoutMs?: number;
  /** Prefix for every argv, e.g. `["ip", "netns", "exec", "ns1"]`. */
  readonly prefix?: readonly string[];
}

/** The real runner: `Bun.spawn` with piped stdio and a timeout. */
export function spawnRunner(options: SpawnRunnerOptions = {}): CommandRunner {
  const timeout = options.timeoutMs ?? 30_000;
  const prefix = options.prefix ?? [];
  return async (argv, stdin) => {
    const command = [...prefix, ...argv];
    let proc: ReturnType<typeof Bun.spawn>;
    try {
      proc = Bun.spawn(command, {
        stdin: stdin === undefined ? "ignore" : new Blob([stdin]),
        stdout: "pipe",
        stderr: "pipe",
        timeout,
      });
    } catch (err) {
      return {
        code: 127,
        stdout: "",
        stderr: `${command[0] ?? ""}: ${err instanceof Error ? err.message : err}`,
      };
    }
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout as ReadableStream).text(),
      new Response(proc.stderr as ReadableStream).text(),
      proc.exited,
    ]);
    return { code: proc.signalCode === null ? code : 128 + 9, stdout, stderr };
  };
}
