/**
 * Watches with `maxValueBytes` on the JSON stores, against real servers: puts and resync entries hand
 * longer values over as "" with their length. etcd v2 resyncs re-list the prefix and Consul's blocking
 * queries re-read it whole, so both read their answers through the streaming reader.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ConsulStore } from "../../stores/consul/index.ts";
import { Etcd2Store } from "../../stores/etcd2/index.ts";
import type { KeyValue, WatchEvent } from "../../stores/store.ts";
import { type ConsulServer, startConsul } from "../harness/consul.ts";
import { type EtcdServer, startEtcd } from "../harness/servers.ts";
import { probe } from "./watch-probe.ts";

const SLOW = 120_000;
const LIMIT = 8;
const LONG = "é".repeat(LIMIT); // 16 bytes
let etcd: EtcdServer;
let consul: ConsulServer;
const stores: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  [etcd, consul] = await Promise.all([startEtcd({ enableV2: true }), startConsul()]);
}, SLOW);

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all([etcd?.stop(), consul?.stop()]);
}, SLOW);

const puts = (events: readonly WatchEvent[]) =>
  events.flatMap((e) => (e.type === "put" ? [[e.kv.key, e.kv.value, e.kv.omittedBytes]] : []));
const shown = (entries: readonly KeyValue[]) => entries.map((e) => [e.key, e.value, e.omittedBytes]);

describe("bounded watch", () => {
  test("bounded watch - etcd2: puts and the resync after a directory delete leave long values out", async () => {
    const store = new Etcd2Store({ endpoints: [etcd.endpoint] }, { textBodyBytes: 0 });
    stores.push(store);
    const p = `/weft-bounded/${process.pid}-${Date.now().toString(36)}/`;
    await store.create(`${p}keep`, LONG);
    await store.create(`${p}sub/x`, "x");
    const { revision } = await store.list(p);
    const watch = probe(store, p, revision, { maxValueBytes: LIMIT });
    try {
      await store.create(`${p}long`, LONG, { ttlSeconds: 60 });
      await store.create(`${p}short`, "short");
      await watch.until("two puts", (es) => puts(es).length >= 2);
      expect(puts(watch.events)).toEqual([
        [`${p}long`, "", 16],
        [`${p}short`, "short", undefined],
      ]);
      // A whole directory of watched keys vanishing in one event can only be followed by a re-list.
      await fetch(`${etcd.endpoint}/v2/keys${p}sub?recursive=true`, { method: "DELETE" });
      await watch.until("a resync", (es) => es.some((e) => e.type === "resync"));
      const resync = watch.events.find((e) => e.type === "resync");
      expect(resync?.type === "resync" ? shown(resync.entries) : []).toEqual([
        [`${p}keep`, "", 16],
        [`${p}long`, "", 16],
        [`${p}short`, "short", undefined],
      ]);
    } finally {
      await watch.stop();
    }
  });

  test("bounded watch - consul: the start resync and later puts leave long values out", async () => {
    const store = new ConsulStore({ endpoints: [consul.endpoint] }, { textBodyBytes: 0 });
    stores.push(store);
    const p = `/weft-bounded/${process.pid}-${Date.now().toString(36)}/`;
    await store.create(`${p}keep`, LONG);
    await store.create(`${p}small`, "s");
    // From revision 1 the watch cannot prove that nothing was deleted: it starts with a resync.
    const watch = probe(store, p, 1n, { maxValueBytes: LIMIT });
    try {
      await watch.until("the resync", (es) => es.some((e) => e.type === "resync"));
      const resync = watch.events.find((e) => e.type === "resync");
      expect(resync?.type === "resync" ? shown(resync.entries) : []).toEqual([
        [`${p}keep`, "", 16],
        [`${p}small`, "s", undefined],
      ]);
      await store.create(`${p}long`, `${LONG}!`);
      await store.create(`${p}short`, "short");
      await watch.until("two puts", (es) => puts(es).length >= 2);
      expect(puts(watch.events)).toEqual([
        [`${p}long`, "", 17],
        [`${p}short`, "short", undefined],
      ]);
      // The unbounded list afterwards still reads every value whole.
      const whole = await store.list(p);
      expect(whole.entries.find((e) => e.key === `${p}long`)?.value).toBe(`${LONG}!`);
      expect(whole.entries.every((e) => e.omittedBytes === undefined)).toBe(true);
    } finally {
      await watch.stop();
    }
  });
});
