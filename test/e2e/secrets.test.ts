/**
 * Secrets never show: an agent on etcd with authentication enabled gets its password from
 * FLANNELD_ETCD_PASSWORD (as the installed unit gives it, from /etc/weft/weft.env) and a canary value.
 * Its log, /metrics and /status (control socket), `weft status`, `ps` and /proc/<pid>/cmdline must
 * not contain it; nor may the log of an agent given a wrong password, nor `weft config get`'s error.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describeNetns } from "../harness/netns.ts";
import { type Agent, Cluster, eventually, SEED_000_CONFIG } from "./cluster.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
const PASSWORD = `canary${crypto.randomUUID().replaceAll("-", "")}`;
const WRONG = `wrong${crypto.randomUUID().replaceAll("-", "")}`;

async function run(cmd: string[]): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, out: stdout + stderr };
}

describeNetns("secrets - an etcd password given through the environment", () => {
  let cluster: Cluster;
  let good: Agent;
  let bad: Agent;
  const socket = (i: number) => join(cluster.dir, `weft-host${i}.sock`);
  const get = (i: number, path: string) =>
    fetch(`http://weft${path}`, { unix: socket(i) } as RequestInit).then(async (r) => ({
      status: r.status,
      body: await r.text(),
    }));

  beforeAll(async () => {
    cluster = await Cluster.start({ store: "etcd", hosts: 2 });
    await cluster.writeConfig(SEED_000_CONFIG);
    const etcdctl = ["etcdctl", `--endpoints=${cluster.endpoint}`];
    await cluster.segment.lan.exec([...etcdctl, "user", "add", "root", `--new-user-password=${PASSWORD}`]);
    await cluster.segment.lan.exec([...etcdctl, "auth", "enable"]);
    good = cluster.startAgent(0, ["--etcd-username=root"], { FLANNELD_ETCD_PASSWORD: PASSWORD });
    bad = cluster.startAgent(1, ["--etcd-username=root"], { FLANNELD_ETCD_PASSWORD: WRONG });
    await eventually(
      "the agent with the right password to be ready",
      async () => {
        return (await get(0, "/readyz").catch(() => ({ status: 0 }))).status === 200;
      },
      30_000,
    );
    await eventually("the agent with a wrong password to say so", () =>
      bad.log().includes("refused the credentials"),
    );
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  test("secrets - the password is in no log, /metrics, /status, weft status, ps or cmdline; a wrong one is named as refused, unseen", async () => {
    const seen: Record<string, string> = {
      "log of the agent": good.log(),
      "log of the agent with a wrong password": bad.log(),
      "/metrics": (await get(0, "/metrics")).body,
      "/status": (await get(0, "/status")).body,
      "/status of the agent with a wrong password": (await get(1, "/status")).body,
      "weft status": (await run([process.execPath, MAIN, "status", `--control-socket=${socket(0)}`])).out,
      "weft status --json": (
        await run([process.execPath, MAIN, "status", "--json", `--control-socket=${socket(0)}`])
      ).out,
      "ps -o args": (await run(["ps", "-o", "args=", "-p", `${good.proc.pid},${bad.proc.pid}`])).out,
      cmdline: readFileSync(`/proc/${good.proc.pid}/cmdline`, "utf8").replaceAll("\0", " "),
    };
    // A command that fails on the password: `weft config get` inside host 1, password in its environment.
    const getConfig = cluster
      .host(1)
      .ns.spawn(
        [
          process.execPath,
          MAIN,
          "config",
          "get",
          `--etcd-endpoints=${cluster.endpoint}`,
          "--etcd-username=root",
          `--etcd-prefix=${cluster.prefix}`,
        ],
        { env: { FLANNELD_ETCD_PASSWORD: WRONG } },
      );
    const [out, err, code] = await Promise.all([
      new Response(getConfig.stdout).text(),
      new Response(getConfig.stderr).text(),
      getConfig.exited,
    ]);
    seen["weft config get with a wrong password"] = out + err;
    expect(code).toBe(1);
    expect(err).toContain('refused the credentials of user "root"');

    // They are the right texts: the agent runs with the flags, and the password got it its lease.
    expect(seen["ps -o args"]).toContain("--etcd-username=root");
    expect(seen["/status"]).toContain(cluster.prefix);
    expect(seen["log of the agent with a wrong password"]).toContain(
      'refused the credentials of user "root"',
    );
    for (const [where, text] of Object.entries(seen)) {
      expect({ where, leaks: text.includes(PASSWORD) || text.includes(WRONG) }).toEqual({
        where,
        leaks: false,
      });
    }
  }, 60_000);
});
