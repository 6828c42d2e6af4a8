/**
 * `--nats-replicas`: how many JetStream servers keep a copy of the KV bucket when the driver creates
 * it. JetStream allows 1 to 5; a single server (not clustered) only 1. An existing bucket keeps the
 * replica count it was created with.
 */
import { StoreError, StoreErrorCode } from "../errors.ts";

export const MAX_REPLICAS = 5;
export const DEFAULT_REPLICAS = 1;

/** The rule `value` breaks, or undefined when it is a valid replica count. */
export function replicasRule(value: string): string | undefined {
  const n = /^[1-9][0-9]*$/.test(value) ? Number(value) : Number.NaN;
  if (Number.isInteger(n) && n >= 1 && n <= MAX_REPLICAS) return undefined;
  return `must be a whole number from 1 to ${MAX_REPLICAS}: how many JetStream servers keep a copy of the bucket (at most the cluster's servers; 1 on a single server)`;
}

/** The replica count the store was given, checked; the default when absent. */
export function checkReplicas(replicas: number | undefined): number {
  if (replicas === undefined) return DEFAULT_REPLICAS;
  const rule = replicasRule(String(replicas));
  if (rule !== undefined) {
    throw new StoreError(StoreErrorCode.Invalid, `--nats-replicas=${replicas}: ${rule}`);
  }
  return replicas;
}
