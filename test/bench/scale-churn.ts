/**
 * The churn writer of test/bench/scale.bench.ts, a process of its own next to the agent: started by
 * the driver (test/bench/scale-inside.ts) inside the agent's namespace with `bun scale-churn.ts
 * '<ChurnArgs json>'`, it writes to etcd on an open-loop schedule and prints one JSON line
 * (`ChurnReport`) with the CLOCK_MONOTONIC time of every request; the driver matches them with the
 * route events its monitor saw.
 *
 * Schedule: CHURN.rate operations a second for CHURN.seconds, one every 1000/rate ms, each sent at
 * its slot without waiting for the previous one. Even slots put a new lease (peerLease(CHURN.base +
 * j), flanneld's JSON, its own 24 h etcd lease granted before the window); odd slots delete the lease
 * put CHURN.lagOps slots earlier, so the peer count stays N … N + lagOps/2. Slots before the first
 * delete is due stay empty. Leases still present after the window are deleted then, untimed.
 */
import { EtcdHttp, LEASE_TTL_SECONDS, peerLease } from "./agent-fixtures.ts";
import { monotonicMs } from "./scale-clock.ts";
import { CHURN, type ChurnArgs, type ChurnOp, type ChurnReport } from "./scale-fixtures.ts";

const args = JSON.parse(process.argv[2] ?? "{}") as ChurnArgs;
const etcd = new EtcdHttp(args.endpoint);
const slots = CHURN.rate * CHURN.seconds;
const slotMs = 1_000 / CHURN.rate;
const puts = Math.ceil(slots / 2);
const leases = Array.from({ length: puts }, (_, j) => peerLease(CHURN.base + j));

const grantStart = performance.now();
const leaseIds: string[] = [];
for (let start = 0; start < puts; start += 50) {
  const n = Math.min(50, puts - start);
  leaseIds.push(...(await Promise.all(Array.from({ length: n }, () => etcd.grant(LEASE_TTL_SECONDS)))));
}
const grantMs = performance.now() - grantStart;

const ops: ChurnOp[] = [];
const pending: Promise<void>[] = [];
const deleted = new Set<number>();

async function send(action: "put" | "delete", j: number): Promise<void> {
  const lease = leases[j];
  if (lease === undefined) return;
  const key = `${args.subnetsPrefix}${lease.keyName}`;
  const sentMono = monotonicMs();
  try {
    if (action === "put") await etcd.put(key, lease.value, leaseIds[j] ?? "");
    else await etcd.del(key);
    ops.push({ dst: lease.dst, action, sentMono, rttMs: monotonicMs() - sentMono });
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    ops.push({ dst: lease.dst, action, sentMono, rttMs: monotonicMs() - sentMono, error });
  }
}

const start = performance.now();
let lagMaxMs = 0;
for (let slot = 0; slot < slots; slot++) {
  const due = start + slot * slotMs;
  const wait = due - performance.now();
  if (wait > 0) await Bun.sleep(wait);
  lagMaxMs = Math.max(lagMaxMs, performance.now() - due);
  if (slot % 2 === 0) {
    pending.push(send("put", slot / 2));
  } else {
    const j = (slot - 1 - CHURN.lagOps) / 2;
    if (j >= 0) {
      deleted.add(j);
      pending.push(send("delete", j));
    }
  }
}
await Promise.all(pending);
const windowMs = performance.now() - start;

// Untimed: the leases put in the last lagOps slots.
for (let j = 0; j < puts; j++) {
  const lease = leases[j];
  if (!deleted.has(j) && lease !== undefined) await etcd.del(`${args.subnetsPrefix}${lease.keyName}`);
}

const report: ChurnReport = { ops, grantMs, windowMs, lagMaxMs };
console.log(JSON.stringify(report));
