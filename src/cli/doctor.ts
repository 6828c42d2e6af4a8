/**
 * `weft doctor [--json] [--control-socket=PATH] [agent flags…]`: the one command an operator runs on a
 * broken host. It asks the running agent (control socket, or `--healthz-port`), the store, and this
 * host's kernel, and prints one line per check — `ok`, `WARN` or `FAIL`, what is wrong and the fix — or
 * a JSON array of `{check, status, finding, fix}` with `--json`. Read-only: it changes nothing.
 * The rules are in `doctor/host-rules.ts` and `doctor/store-rules.ts`; the reading in `doctor/*-facts.ts`.
 */
import { chooseExternal } from "../agent/ext-iface.ts";
import { type AgentFlags, parseFlags } from "../config/flags.ts";
import { errorMessage } from "../errors.ts";
import { spawnRunner } from "../firewall/runner.ts";
import { checkSysctls } from "../firewall/sysctl.ts";
import { DEFAULT_CONTROL_SOCKET } from "../http/control.ts";
import { formatCidr } from "../net/ipv4.ts";
import { Netlink } from "../netlink/netlink.ts";
import { readSubnetEnv } from "../subnet/subnet-env.ts";
import { agentAddress, describeAddress, getFromAgent, takeControlSocket } from "./agent-client.ts";
import {
  Check,
  type DoctorFinding,
  exitStatus,
  fail,
  ok,
  ordered,
  renderFindings,
} from "./doctor/finding.ts";
import {
  findProcesses,
  readGcThresh,
  readIptables,
  readMtu,
  readNftChains,
  readNftTables,
} from "./doctor/host-facts.ts";
import {
  flannelObjects,
  forwardRule,
  gcThreshRule,
  leftoverRule,
  mtuRule,
  secondAgentRule,
  sysctlRules,
} from "./doctor/host-rules.ts";
import { readStore } from "./doctor/store-facts.ts";
import { type AgentAnswer, agentRule, configRule, leaseRule, storeRule } from "./doctor/store-rules.ts";

export const DOCTOR_HELP = `usage: weft doctor [--json] [--control-socket=PATH] [agent flags…]

Checks this host for what breaks a weft (or flanneld) network: the running agent, the store and its
credentials, the network config, the own lease and subnet.env, ip_forward, rp_filter, the FORWARD
policy, MTUs, neighbour table limits, flanneld leftovers and a second agent. Prints one line per
check, ok, WARN or FAIL, with what is wrong and how to fix it. It changes nothing.

Give it the agent's flags (or run it with the agent's FLANNELD_*/WEFT_* environment) so it checks the
same store, --etcd-prefix, --iface and --subnet-file.

  --json                 print a JSON array of {check, status, finding, fix}
  --control-socket=PATH  the running agent's control socket (default ${DEFAULT_CONTROL_SOCKET},
                         or WEFT_CONTROL_SOCKET);
                         with --healthz-port=N and no --control-socket, the agent's HTTP port

Exit status: 0 when no check is FAIL (WARN alone exits 0), 1 when one is (or the flags are bad).
`;

/** The parts of the agent's /status that doctor uses. */
interface StatusDoc {
  readonly ready?: { readonly ready: boolean; readonly reason: string };
  readonly lease?: { readonly subnet: string } | null;
  readonly peers?: readonly unknown[];
  readonly routes?: number;
  readonly externalInterface?: string;
  readonly publicIP?: string;
  readonly backend?: string;
  readonly device?: string | null;
}

async function askAgent(
  flags: AgentFlags,
  controlSocket: string | undefined,
): Promise<{
  answer: AgentAnswer;
  status: StatusDoc | undefined;
}> {
  const address = agentAddress(flags, controlSocket);
  try {
    const res = await getFromAgent(address, "/status");
    const status = res.status === 200 ? (JSON.parse(res.text) as StatusDoc) : undefined;
    const ready = status?.ready ?? {
      ready: false,
      reason: `/status answered ${res.status}: ${res.text.trim()}`,
    };
    return {
      answer: {
        kind: "answered",
        where: describeAddress(address),
        ready,
        lease: status?.lease?.subnet,
        peers: status?.peers?.length,
        routes: status?.routes,
      },
      status,
    };
  } catch (err) {
    return { answer: { kind: "unreachable", message: errorMessage(err) }, status: undefined };
  }
}

interface HostChoice {
  readonly ext: { readonly name: string; readonly mtu: number } | undefined;
  readonly publicIP: string | undefined;
  readonly finding: DoctorFinding;
}

/** The agent's interface and PublicIP when it answers and doctor got no interface flags, else chosen like the agent. */
async function chooseHost(flags: AgentFlags, status: StatusDoc | undefined): Promise<HostChoice> {
  const explicit = flags.iface.length > 0 || flags.ifaceRegex.length > 0 || flags.publicIp !== undefined;
  if (!explicit && status?.externalInterface !== undefined && status.publicIP !== undefined) {
    const mtu = await readMtu(status.externalInterface);
    return {
      ext: mtu === undefined ? undefined : { name: status.externalInterface, mtu },
      publicIP: status.publicIP,
      finding: ok(
        Check.Iface,
        `${status.externalInterface}, PublicIP ${status.publicIP} (as the agent says)`,
      ),
    };
  }
  let netlink: Netlink | undefined;
  try {
    netlink = Netlink.open();
    const chosen = await chooseExternal(netlink, flags);
    return {
      ext: { name: chosen.ext.name, mtu: chosen.ext.mtu },
      publicIP: chosen.publicIP,
      finding: ok(Check.Iface, `${chosen.ext.name}, PublicIP ${chosen.publicIP}`),
    };
  } catch (err) {
    return {
      ext: undefined,
      publicIP: undefined,
      finding: fail(
        Check.Iface,
        `cannot choose the external interface: ${errorMessage(err)}`,
        "give doctor the agent's --iface/--iface-regex/--public-ip",
      ),
    };
  } finally {
    await netlink?.close();
  }
}

/** Every check, in print order. */
export async function diagnose(
  flags: AgentFlags,
  controlSocket: string | undefined,
): Promise<DoctorFinding[]> {
  const run = spawnRunner({ timeoutMs: 10_000 });
  const [agent, store, saved, nftChains, nftTables, gc, flanneld, env] = await Promise.all([
    askAgent(flags, controlSocket),
    readStore(flags),
    readIptables(run),
    readNftChains(run),
    readNftTables(run),
    readGcThresh(run),
    findProcesses("flanneld"),
    readSubnetEnv(flags.subnetFile),
  ]);
  const host = await chooseHost(flags, agent.status);
  const config = store.config?.kind === "valid" ? store.config.config : undefined;
  const backend =
    config?.backend.type ??
    (agent.status?.backend === "vxlan" || agent.status?.backend === "host-gw"
      ? agent.status.backend
      : undefined);
  const deviceName =
    config?.backend.type === "vxlan" ? `flannel.${config.backend.vni}` : (agent.status?.device ?? undefined);
  const deviceMtu = deviceName === undefined ? undefined : await readMtu(deviceName);
  const docker0Mtu = await readMtu("docker0");
  const own = host.publicIP;
  const network = config?.network ?? env?.network;
  const peers =
    store.leases !== undefined
      ? store.leases.filter((l) => l.publicIP !== own).length
      : agent.status?.peers?.length;

  const findings: (DoctorFinding | undefined)[] = [
    agentRule(agent.answer),
    storeRule(flags.store, flags.storeEndpoints, store.reach),
    store.config === undefined ? undefined : configRule(store.key, flags.store, store.config),
    store.leases === undefined || own === undefined
      ? undefined
      : leaseRule({
          prefix: flags.etcdPrefix,
          publicIP: own,
          leases: store.leases,
          subnetFile: flags.subnetFile,
          envSubnet: env?.subnet,
          envMissing: env === undefined,
        }),
    host.finding,
    ...sysctlRules(await checkSysctls(host.ext?.name), host.ext?.name),
    forwardRule({
      saved,
      network: network === undefined ? undefined : formatCidr(network),
      nftChains,
    }),
    mtuRule({
      flannelMtu: env?.mtu,
      subnetFile: flags.subnetFile,
      docker0Mtu,
      backend,
      device:
        deviceName === undefined || deviceMtu === undefined
          ? undefined
          : { name: deviceName, mtu: deviceMtu },
      ext: host.ext,
    }),
    gcThreshRule(gc, peers),
    leftoverRule(flannelObjects("error" in saved ? undefined : saved, nftTables), flanneld.length > 0),
    secondAgentRule(flanneld),
  ];
  return ordered(findings.filter((f) => f !== undefined));
}

export async function runDoctor(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  if (argv.some((a) => a === "-h" || a === "--help" || a === "-help")) {
    process.stdout.write(DOCTOR_HELP);
    return 0;
  }
  const json = argv.includes("--json");
  let flags: AgentFlags;
  let controlSocket: string | undefined;
  try {
    const taken = takeControlSocket(
      argv.filter((a) => a !== "--json"),
      env,
    );
    controlSocket = taken.path;
    flags = parseFlags(taken.rest, env);
  } catch (err) {
    process.stderr.write(`weft doctor: ${errorMessage(err)}\n`);
    return 1;
  }
  const findings = await diagnose(flags, controlSocket);
  process.stdout.write(json ? `${JSON.stringify(findings, null, 2)}\n` : renderFindings(findings));
  return exitStatus(findings);
}
