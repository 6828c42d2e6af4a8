/**
 * The full fuzz run: `bun test/fuzz/run.ts [--count=100000] [--seed=1] [--target=<name>,…]` feeds every
 * target (the network config, lease and flag parsers; the etcd v3, etcd v2, Consul and NATS codecs)
 * `count` generated inputs and prints per target the inputs, the time, the slowest input and the
 * findings (an exception other than the documented typed errors, a broken invariant, an input slower
 * than 1 s), each with the index that `--replay=<target>:<index>` shows again. Exits 1 on findings.
 * A fixed-seed slice of the same targets runs in the test suite (test/unit/fuzz/fuzz.test.ts).
 */
import { replayInput, runTarget, showInput, type TargetResult } from "./harness.ts";
import { TARGETS } from "./targets.ts";

function option(name: string): string | undefined {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

const count = Number(option("count") ?? 100_000);
const seed = Number(option("seed") ?? 1);
const only = option("target")?.split(",");
const replay = option("replay");

if (!Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(seed)) {
  process.stderr.write(
    "usage: bun test/fuzz/run.ts [--count=N] [--seed=N] [--target=a,b] [--replay=target:index]\n",
  );
  process.exit(2);
}

if (replay !== undefined) {
  const [name, index] = replay.split(":");
  const target = TARGETS.find((t) => t.name === name);
  if (target === undefined || index === undefined) {
    process.stderr.write(
      `unknown target in --replay=${replay}; targets: ${TARGETS.map((t) => t.name).join(", ")}\n`,
    );
    process.exit(2);
  }
  const input = replayInput(target, seed, Number(index));
  process.stdout.write(`${showInput(input, 100_000)}\n`);
  try {
    target.run(input);
    process.stdout.write("no finding\n");
  } catch (err) {
    process.stdout.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(0);
}

const targets = only === undefined ? TARGETS : TARGETS.filter((t) => only.includes(t.name));
process.stdout.write(
  `fuzz: seed ${seed}, ${count.toLocaleString("en")} inputs per target, ${targets.length} targets\n`,
);
const results: TargetResult[] = [];
const started = performance.now();
for (const target of targets) {
  const result = runTarget(target, { seed, count });
  results.push(result);
  const verdict = result.findings.length === 0 ? "no findings" : `${result.findings.length} FINDINGS`;
  process.stdout.write(
    `${target.name.padEnd(16)} ${result.inputs.toLocaleString("en").padStart(9)} inputs  ${(result.ms / 1000).toFixed(1).padStart(6)} s  slowest ${result.slowestMs.toFixed(1).padStart(6)} ms  ${verdict}\n`,
  );
  process.stdout.write(`  covers: ${target.covers.join(" ")}\n  may throw: ${target.allowed}\n`);
  for (const f of result.findings) {
    process.stdout.write(`  ! ${f.kind} (${f.count}×, first at --replay=${target.name}:${f.index})\n`);
    process.stdout.write(`    at ${f.where}\n    input ${f.input}\n`);
  }
}
const total = results.reduce((n, r) => n + r.inputs, 0);
const findings = results.reduce((n, r) => n + r.findings.length, 0);
process.stdout.write(
  `fuzz: ${total.toLocaleString("en")} inputs in ${((performance.now() - started) / 1000).toFixed(1)} s, ${findings} findings\n`,
);
process.exit(findings === 0 ? 0 : 1);
