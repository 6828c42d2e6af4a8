/**
 * The `etcd` driver's lists over gRPC against a real etcd 3.4: the same answer as through the JSON
 * gateway (values over `maxValueBytes` left out alike), no gateway range request while gRPC works, and
 * the gateway taking over where gRPC does not (a relay that speaks only HTTP/1.1, an invalidated auth
 * token). The contract suite runs over both paths as well (contract.test.ts: "etcd" and "etcd-gateway").
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Etcd3Store } from "../../stores/etcd/index.ts";
import type { KeyValue, StoreLogger, StoreOptions } from "../../stores/store.ts";
import { type EtcdServer, startEtcd } from "../harness/servers.ts";
import { makeTestCerts } from "../harness/tls.ts";

const SLOW = 60_000;

/** A fetch that records the gateway paths it was asked for. */
function countingFetch(paths: string[]): typeof fetch {
  return ((input: string | URL | Request, init?: RequestInit) => {
    paths.push(new URL(String(input)).pathname);
    return fetch(input, init);
  }) as typeof fetch;
}

function recordingLogger(lines: string[]): StoreLogger {
  const note = (m: string, f?: Record<string, unknown>) => lines.push(`${m} ${JSON.stringify(f ?? {})}`);
  return { debug: note, info: note, warn: note };
}

const comparable = (entries: readonly KeyValue[]) =>
  entries.map((e) => ({ key: e.key, value: e.value, revision: e.revision, expires: e.expires }));

describe("etcd3 driver lists over gRPC", () => {
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
        const value = i % 2 === 0 ? `${"é".repeat((1 << 19) - 1)}${i}` : `{"PublicIP":"10.0.0.${i}"}`;
        values.set(`${p}${i}`, value);
        await writer.create(`${p}${i}`, value, i % 3 === 0 ? {} : { ttlSeconds: 600 });
      }
      const paths: string[] = [];
      // Values of 1 MiB are left out while the answer streams in (grpc-range-stream.ts walks their kvs).
      const grpcStore = open({ fetch: countingFetch(paths) });
      const viaGrpc = await grpcStore.list(p, { maxValueBytes: 4096 });
      expect(paths).toEqual([]);
      expect(viaGrpc.entries.map((e) => [e.key, e.value, e.omittedBytes])).toEqual(
        [...values].map(([key, value]) =>
          value.length > 4096 ? [key, "", Buffer.byteLength(value)] : [key, value, undefined],
        ),
      );
      expect(viaGrpc.entries.find((e) => e.key === `${p}0`)?.omittedBytes).toBe((1 << 20) - 1);
      const viaGateway = await open({}, false).list(p, { maxValueBytes: 4096 });
      expect(viaGrpc).toEqual(viaGateway);
      const whole = await grpcStore.list(p);
      expect(whole.entries.map((e) => e.value)).toEqual([...values.values()]);
      expect(paths).toEqual([]);
    },
    SLOW,
  );

  test("etcd3 gRPC - a list over gRPC equals the gateway's, without a gateway range request", async () => {
    const p = "/weft-grpc/same/";
    const writer = open({}, false);
    for (let i = 0; i < 300; i++) {
      const key = `${p}10.5.${i}.0-24${i % 7 === 0 ? "&fd00::-64" : ""}`;
      const value = i % 5 === 0 ? `雪 ✓ 🚀 ${i}` : `{"PublicIP":"10.0.${i >> 8}.${i & 255}"}`;
      await writer.create(key, value, i % 3 === 0 ? {} : { ttlSeconds: 600 });
    }
    const paths: string[] = [];
    const viaGrpc = await open({ fetch: countingFetch(paths) }).list(p);
    const viaGateway = await open({}, false).list(p);
    expect(viaGrpc.entries).toHaveLength(300);
    expect(comparable(viaGrpc.entries)).toEqual(comparable(viaGateway.entries));
    expect(viaGrpc.revision).toBe(viaGateway.revision);
    expect(viaGrpc.entries.filter((e) => !e.expires)).toHaveLength(100);
    expect(paths).toEqual([]);
    expect((await open().list("/weft-grpc/nothing/")).entries).toEqual([]);
  });

  test(
    "etcd3 gRPC - behind a relay that speaks only HTTP/1.1 lists go through the gateway, and gRPC stops after three tries",
    async () => {
      const p = "/weft-grpc/relay/";
      await open({}, false).create(`${p}a`, "1", { ttlSeconds: 600 });
      const relay = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch: async (req) => {
          const url = new URL(req.url);
          const answer = await fetch(`${server.endpoint}${url.pathname}${url.search}`, {
            method: req.method,
            headers: req.headers,
            body: req.method === "GET" ? undefined : await req.arrayBuffer(),
          });
          return new Response(await answer.arrayBuffer(), { status: answer.status, headers: answer.headers });
        },
      });
      try {
        const lines: string[] = [];
        const paths: string[] = [];
        const store = open({
          endpoints: [`http://127.0.0.1:${relay.port}`],
          fetch: countingFetch(paths),
          logger: recordingLogger(lines),
        });
        for (let i = 0; i < 4; i++) expect((await store.list(p)).entries.map((e) => e.value)).toEqual(["1"]);
        expect(paths.filter((path) => path === "/v3/kv/range")).toHaveLength(4);
        expect(lines.filter((l) => l.includes("gRPC"))).toHaveLength(2);
        expect(lines.at(-1)).toContain("listing through the gateway only from now on");
      } finally {
        await relay.stop(true);
      }
    },
    SLOW,
  );
});

describe("etcd3 driver lists over gRPC with authentication", () => {
  let server: EtcdServer;

  beforeAll(async () => {
    server = await startEtcd();
    await server.etcdctl("user", "add", "root:root-secret-pw");
    await server.etcdctl("user", "grant-role", "root", "root");
    await server.etcdctl("user", "add", "weft:weft-secret-pw");
    await server.etcdctl("role", "add", "weft");
    await server.etcdctl("role", "grant-permission", "--prefix=true", "weft", "readwrite", "/weft/");
    await server.etcdctl("user", "grant-role", "weft", "weft");
    await server.etcdctl("auth", "enable");
  }, SLOW);

  afterAll(async () => {
    await server?.stop();
  }, SLOW);

  test(
    "etcd3 gRPC - lists carry the auth token, and an invalidated token is renewed through the gateway",
    async () => {
      const paths: string[] = [];
      const lines: string[] = [];
      const store = new Etcd3Store(
        {
          endpoints: [server.endpoint],
          username: "weft",
          password: "weft-secret-pw",
          fetch: countingFetch(paths),
          logger: recordingLogger(lines),
        },
        {},
        { grpcList: true },
      );
      try {
        const p = "/weft/grpc-auth/";
        await store.create(`${p}a`, "1");
        paths.length = 0;
        expect((await store.list(p)).entries.map((e) => e.value)).toEqual(["1"]);
        expect(paths).toEqual([]);
        // Disabling auth drops every token; after enabling it again the old token is invalid.
        await server.etcdctl("--user=root:root-secret-pw", "auth", "disable");
        await server.etcdctl("auth", "enable");
        expect((await store.list(p)).entries.map((e) => e.value)).toEqual(["1"]);
        // gRPC's "invalid auth token" drops the token: the gateway list authenticates first.
        expect(paths).toEqual(["/v3/auth/authenticate", "/v3/kv/range"]);
        paths.length = 0;
        expect((await store.list(p)).entries.map((e) => e.value)).toEqual(["1"]);
        expect(paths).toEqual([]);
        expect(lines.join("\n")).not.toContain("secret");
        expect(lines.filter((l) => l.includes("gRPC"))).toEqual([]);
      } finally {
        await store.close();
      }
    },
    SLOW,
  );
});

describe("etcd3 driver lists over gRPC with TLS", () => {
  test(
    "etcd3 gRPC - over TLS with a client certificate lists go over gRPC too",
    async () => {
      const certs = makeTestCerts();
      const server = await startEtcd({ tls: certs });
      const paths: string[] = [];
      const store = new Etcd3Store(
        {
          endpoints: [server.endpoint],
          tls: { caFile: certs.caFile, certFile: certs.clientCert, keyFile: certs.clientKey },
          fetch: countingFetch(paths),
        },
        {},
        { grpcList: true },
      );
      try {
        await store.create("/weft-grpc/tls/a", "1", { ttlSeconds: 600 });
        paths.length = 0;
        expect((await store.list("/weft-grpc/tls/")).entries.map((e) => e.value)).toEqual(["1"]);
        expect(paths).toEqual([]);
      } finally {
        await store.close();
        await server.stop();
        certs.remove();
      }
    },
    SLOW,
  );
});
