// A fixed-seed slice of the fuzz run (test/fuzz/run.ts runs 100,000 inputs per target): the parsers
// of the network config, leases and flags, and every store codec's decoders, each fed a few thousand
// generated inputs, must throw nothing but their typed errors, keep their invariants and never take
// longer than a second on one input.
import { expect, test } from "bun:test";
import { runTarget } from "../../fuzz/harness.ts";
import { TARGETS } from "../../fuzz/targets.ts";

const SEED = 20_260_101;
const INPUTS = 4_000;

for (const target of TARGETS) {
  test(`fuzz - ${target.name}: ${INPUTS} inputs, only documented errors (${target.allowed})`, () => {
    const result = runTarget(target, { seed: SEED, count: INPUTS });
    expect(result.findings.map((f) => `${f.kind} at ${f.where} for ${f.input}`)).toEqual([]);
    expect(result.inputs).toBe(INPUTS);
  });
}
