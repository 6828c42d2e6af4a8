/**
 * What the agent benchmarks (test/bench/agent.bench.ts, test/bench/vxlan.bench.ts) set up outside
 * their namespaces: the weft command (the compiled binary, or `bun src/main.ts`), the cached
 * flanneld, etcd in the segment's bridge namespace, and the kill of agents a crashed driver left.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { removeAll, type Segment } from "../../src/netns/netns.ts";
import { ETCD_ENDPOINT, SEGMENT_PREFIX_LEN, STORE_IP } from "./agent-fixtures.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const MAIN = join(ROOT, "src", "main.ts");
const COMPILE = join(ROOT, "build", "compile.ts");
const ARCH = process.arch === "arm64" ? "arm64" : "x64";
export const FLANNELD_VERSION = "v0.28.9";

export const lastLines = (text: string, n: number) => text.trim().split("\n").slice(-n).join(" | ");
export const fileMiB = (path: string) => statSync(path).size / (1024 * 1024);
export const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

export interface WeftCommand {
  /** argv up to the flags every agent shares. */
  readonly argv: readonly string[];
  /** What identifies a weft agent in /proc/<pid>/cmdline: its binary, or src/main.ts. */
  readonly marker: string;
  /** File size of the compiled binary in MiB, when weft runs as one. */
  readonly binaryMiB?: number;
  /** How weft runs, for the report. */
  readonly note: string;
}

/**
 * The compiled weft binary, built with `bun build/compile.ts --only <arch> --out <dir>/dist`; `bun
 * src/main.ts` when `mode` is "source" or the compile fails (the note says which and why). `bench`
 * names the benchmark in what it prints.
 */
export function weftCommand(bench: string, dir: string, mode: "binary" | "source"): WeftCommand {
  const source = [process.execPath, MAIN, "--store=etcd"];
  if (mode === "source")
    return { argv: source, marker: MAIN, note: "ran from source (WEFT_BENCH_WEFT=source): bun src/main.ts" };
  const out = join(dir, "dist");
  const built = Bun.spawnSync([process.execPath, COMPILE, "--only", ARCH, "--out", out], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const binary = join(out, `weft-linux-${ARCH}`);
  if (built.exitCode !== 0 || !existsSync(binary)) {
    const why = `build/compile.ts failed (exit ${built.exitCode}): ${lastLines(`${built.stderr}${built.stdout}`, 6)}`;
    console.error(`${bench}: ${why}; measuring weft from source instead`);
    return { argv: source, marker: MAIN, note: `ran from SOURCE (bun src/main.ts) because ${why}` };
  }
  const line =
    built.stdout
      .toString()
      .split("\n")
      .find((l) => l.startsWith("built ")) ?? `built ${binary}`;
  console.error(`${bench}: ${line}`);
  return {
    argv: [binary, "--store=etcd"],
    marker: binary,
    binaryMiB: fileMiB(binary),
    note: `ran as the compiled binary: ${line}`,
  };
}

/** The cached flanneld (build/test-bin.sh builds it on first use), or why there is none. */
export function locateFlanneld(): { bin: string; note: string } | { missing: string } {
  const build = Bun.spawnSync(["bash", join(ROOT, "build", "test-bin.sh"), "flanneld"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, FLANNELD_VERSION },
  });
  if (build.exitCode !== 0) {
    const why = lastLines(build.stderr.toString(), 6);
    return { missing: `build/test-bin.sh flanneld failed (exit ${build.exitCode}): ${why}` };
  }
  const bin = build.stdout.toString().trim().split("\n").pop() ?? "";
  if (!existsSync(bin)) return { missing: `build/test-bin.sh printed no binary (${bin})` };
  const notePath = join(bin, "..", "BUILD-NOTE");
  const note = existsSync(notePath) ? readFileSync(notePath, "utf8").trim() : "";
  return { bin, note };
}

/**
 * Starts etcd in the segment's bridge namespace on STORE_IP (logging to `<dir>/etcd.log`, data in
 * `<dir>/etcd`); resolves with the process and etcdctl's version once it answers a health check.
 * The caller kills the process; it is also passed to `onSpawn` at once, so a cleanup that runs
 * while this still waits finds it.
 */
export async function startEtcd(
  seg: Segment,
  dir: string,
  onSpawn: (proc: Subprocess) => void,
): Promise<{ proc: Subprocess; version: string }> {
  await seg.lan.ip("addr", "add", `${STORE_IP}/${SEGMENT_PREFIX_LEN}`, "dev", "br0");
  const fd = openSync(join(dir, "etcd.log"), "a");
  let proc: Subprocess;
  try {
    proc = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        seg.lan.name,
        "etcd",
        "--name=bench",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${ETCD_ENDPOINT}`,
        `--advertise-client-urls=${ETCD_ENDPOINT}`,
        `--listen-peer-urls=http://${STORE_IP}:2380`,
        `--initial-advertise-peer-urls=http://${STORE_IP}:2380`,
        `--initial-cluster=bench=http://${STORE_IP}:2380`,
        "--log-level=warn",
      ],
      { stdin: "ignore", stdout: fd, stderr: fd },
    );
  } finally {
    closeSync(fd);
  }
  onSpawn(proc);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const r = await seg.lan.exec(["etcdctl", `--endpoints=${ETCD_ENDPOINT}`, "endpoint", "health"], {
      allowFailure: true,
    });
    if (r.code === 0) {
      const v = await seg.lan.exec(["etcdctl", `--endpoints=${ETCD_ENDPOINT}`, "version"], {
        allowFailure: true,
      });
      return { proc, version: /etcdctl version: (\S+)/.exec(v.stdout)?.[1] ?? "?" };
    }
    await Bun.sleep(100);
  }
  throw new Error(
    `etcd did not start in the segment: ${readFileSync(join(dir, "etcd.log"), "utf8").slice(-500)}`,
  );
}

/**
 * SIGKILLs every pid listed in `pidFile` (one a line, appended by the drivers) whose
 * /proc/<pid>/cmdline still contains one of `markers`: only agents this benchmark started.
 */
export function killRecordedAgents(pidFile: string, markers: readonly string[]): void {
  const pids = existsSync(pidFile) ? readFileSync(pidFile, "utf8").split("\n").filter(Boolean) : [];
  for (const pid of pids) {
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue; // gone
    }
    if (markers.some((m) => cmdline.includes(m))) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // exited in between
      }
    }
  }
}

/** What a bench started, read when it is torn down (some of it is started later). */
export interface BenchParts {
  /** The bench's own processes, stopped first (drivers inside the namespaces). */
  readonly stopOwn: () => Promise<unknown>;
  readonly pidFile: string;
  /** What identifies the agents in /proc/<pid>/cmdline (see `killRecordedAgents`). */
  readonly markers: () => readonly string[];
  readonly etcd: () => Subprocess | undefined;
  readonly segment: () => Segment | undefined;
  /** The bench's temporary directory: kept with WEFT_BENCH_KEEP=1, else removed. */
  readonly dir: string;
}

/** A bench's teardown: `run()` once (safe to call twice); `started` once it began (Ctrl-C included). */
export interface BenchTeardown {
  run(): Promise<void>;
  readonly started: boolean;
}

/**
 * The teardown every namespace bench needs: its own processes, the agents they started (by pid), etcd,
 * the namespaces, the directory. It also runs on SIGINT/SIGTERM, after `onSignal` (which may kill what
 * `stopOwn` would wait for).
 */
export function benchTeardown(name: string, parts: BenchParts, onSignal?: () => void): BenchTeardown {
  let cleaning: Promise<void> | undefined;
  const teardown: BenchTeardown = {
    run() {
      cleaning ??= (async () => {
        await parts.stopOwn();
        killRecordedAgents(parts.pidFile, parts.markers());
        const etcd = parts.etcd();
        etcd?.kill("SIGKILL");
        await etcd?.exited;
        await parts.segment()?.remove();
        await removeAll();
        if (process.env.WEFT_BENCH_KEEP === "1") console.error(`${name}: logs kept in ${parts.dir}`);
        else rmSync(parts.dir, { recursive: true, force: true });
      })();
      return cleaning;
    },
    get started() {
      return cleaning !== undefined;
    },
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      console.error(`${name}: ${signal}, cleaning up`);
      onSignal?.();
      void teardown.run().finally(() => process.exit(130));
    });
  }
  return teardown;
}
