/**
 * The `etcd` driver's gRPC list with `maxValueBytes` against a real etcd 3.4: values of 1 MiB are left
 * out while the answer streams in (grpc-range-stream.ts walks their kvs), without the gateway taking
 * over, and the entries equal the gateway path's with the same limit.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Etcd3Store } from "../../stores/etcd/index.ts";
import type { StoreOptions } from "../../stores/store.ts";
import { type EtcdServer, startEtcd } from "../harness/servers.ts";

const SLOW = 60_000;
const MiB = 1 << 20;

describe("etcd3 driver lists large values over gRPC", () => {
  let server: EtcdServer;
  const stores: Etcd3Store[] = [];
  const open = (options: Partial<StoreOptions> = {}, grpcList = true) => {
    const store = new Etcd3Store({ endpoints: [server.endpoint], ...options }, {}, { grpcList });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startEtcd();
  }, SLOW);

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await server?.stop();
  }, SLOW);

  test(
    "etcd3 gRPC - a list with maxValueBytes leaves out values of 1 MiB over gRPC, as the gateway does",
    async () => {
      const p = "/weft-grpc/limit/";
      const writer = open({}, false);
      const values = new Map<string, string>();
      for (let i = 0; i < 6; i++) {
        const value = i % 2 === 0 ? `${"é".repeat(MiB / 2 - 1)}${i}` : `{"PublicIP":"10.0.0.${i}"}`;
        values.set(`${p}${i}`, value);
        await writer.create(`${p}${i}`, value, i % 3 === 0 ? {} : { ttlSeconds: 600 });
      }
      const paths: string[] = [];
      const grpcStore = open({
        fetch: ((input: string | URL | Request, init?: RequestInit) => {
          paths.push(new URL(String(input)).pathname);
          return fetch(input, init);
        }) as typeof fetch,
      });
      const viaGrpc = await grpcStore.list(p, { maxValueBytes: 4096 });
      expect(paths).toEqual([]);
      expect(viaGrpc.entries.map((e) => [e.key, e.value, e.omittedBytes])).toEqual(
        [...values].map(([key, value]) =>
          value.length > 4096 ? [key, "", Buffer.byteLength(value)] : [key, value, undefined],
        ),
      );
      expect(viaGrpc.entries.find((e) => e.key === `${p}0`)?.omittedBytes).toBe(MiB - 1);
      const viaGateway = await open({}, false).list(p, { maxValueBytes: 4096 });
      expect(viaGrpc).toEqual(viaGateway);
      const whole = await grpcStore.list(p);
      expect(whole.entries.map((e) => e.value)).toEqual([...values.values()]);
      expect(paths).toEqual([]);
    },
    SLOW,
  );
});
