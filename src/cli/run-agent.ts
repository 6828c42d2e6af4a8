/**
 * `weft [flags]`: the agent. Parses flags and FLANNELD_* variables, waits for the network config,
 * picks the external interface, and runs the agent until SIGINT/SIGTERM. A missing or invalid config
 * is retried every second, as flanneld does (the reason is logged once, and shown in STATUS= and
 * /readyz). Exit codes: 0 after a signal (routes, rules and lease stay), 1 for bad flags or an
 * interface that cannot be used (one line on stderr naming flag and value).
 */

import type { Store } from "../../stores/store.ts";
import { Agent, type KernelEvents } from "../agent/agent.ts";
import { chooseExternal } from "../agent/ext-iface.ts";
import { AgentSource } from "../agent/status.ts";
import { wireFromFlags } from "../agent/wiring.ts";
import { systemClock } from "../clock.ts";
import { type AgentFlags, formatHelp, parseFlags } from "../config/flags.ts";
import { errorMessage, isWeftError, WeftError, WeftErrorCode } from "../errors.ts";
import type { FaultHandlers } from "../fault-handlers.ts";
import { checkSysctls } from "../firewall/sysctl.ts";
import { type ControlServer, startControl } from "../http/control.ts";
import { startHttp } from "../http/server.ts";
import { createLogger } from "../log.ts";
import { Metrics } from "../metrics.ts";
import { formatCidr } from "../net/ipv4.ts";
import { Monitor, type MonitorGroup } from "../netlink/monitor.ts";
import { Netlink } from "../netlink/netlink.ts";
import { detectNexthops } from "../reconcile/route-table.ts";
import { Notifier, StatusThrottle } from "../systemd/notify.ts";
import { statusText } from "../systemd/protocol.ts";
import { waitForConfig } from "./config-wait.ts";
import { runPlan } from "./plan.ts";
import { storeFromFlags } from "./store-from-flags.ts";
import { VERSION } from "./version.ts";

const LEASE_TTL_SECONDS = 24 * 60 * 60;
/** After SIGTERM/SIGINT, exit 0 this long after the signal even if closing the store or sockets hangs. */
const SHUTDOWN_CAP_MS = 1_500;

export async function runAgent(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  faults?: Pick<FaultHandlers, "useLogger">,
): Promise<number> {
  let flags: AgentFlags;
  try {
    flags = parseFlags(argv, env);
  } catch (err) {
    process.stderr.write(`weft: ${errorMessage(err)}\n`);
    return 1;
  }
  if (flags.help) {
    process.stdout.write(formatHelp());
    return 0;
  }
  if (flags.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (flags.dryRun) {
    try {
      return await runPlan(flags, (line) => process.stdout.write(`${line}\n`));
    } catch (err) {
      process.stderr.write(`weft: ${errorMessage(err)}\n`);
      return 1;
    }
  }
  const log = createLogger({ format: flags.logFormat, level: flags.verbosity >= 2 ? "debug" : "info" });
  faults?.useLogger(log);
  for (const w of flags.warnings) log.warn(w);
  const controller = new AbortController();
  let agent: Agent | undefined;
  const notifier: Notifier = new Notifier({
    env,
    pid: process.pid,
    log,
    healthy: () => {
      const busyMs = agent?.busyMs() ?? 0;
      const healthy = busyMs < (notifier.watchdogMs ?? Number.POSITIVE_INFINITY);
      if (!healthy)
        log.warn("an apply has been running too long; withholding the systemd watchdog", { busyMs });
      return healthy;
    },
  });
  notifier.startWatchdog();
  notifier.startExtending();
  const statusLine = new StatusThrottle((text) => notifier.status(text));
  const stop = (signal: string) => {
    if (controller.signal.aborted) process.exit(0);
    log.info("shutting down; routes, rules and the lease stay in place", { signal });
    notifier.stopping();
    const cap = setTimeout(() => {
      log.warn("shutdown: cleanup still running; exiting anyway", { afterMs: SHUTDOWN_CAP_MS });
      process.exit(0);
    }, SHUTDOWN_CAP_MS);
    cap.unref();
    controller.abort();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  let store: Store | undefined;
  let netlink: Netlink | undefined;
  let monitor: Monitor | undefined;
  // The health endpoints answer from process start; /readyz says why the agent is not ready yet.
  const metrics = new Metrics();
  const source = new AgentSource();
  let http: ReturnType<typeof startHttp> | undefined;
  let control: ControlServer | undefined;
  try {
    control = await startControl({ path: flags.controlSocket, metrics, source });
    http =
      flags.healthzPort > 0
        ? startHttp({ hostname: flags.healthzIp, port: flags.healthzPort, metrics, source })
        : undefined;
    store = storeFromFlags(flags, log);
    const waiting = (text: string) => {
      statusLine.update(text);
      source.waiting(text);
    };
    const config = await waitForConfig(
      { flags, store, log, clock: systemClock, status: waiting },
      controller.signal,
    );
    if (config === undefined) return 0;
    const handle = Netlink.open();
    netlink = handle;
    const external = await chooseExternal(handle, flags);
    for (const miss of external.misses ?? []) log.info("interface flag did not match", { miss });
    if (config.backend.type === "host-gw" && external.publicIP !== external.ifaceIP) {
      throw new WeftError(
        WeftErrorCode.FlagInvalid,
        `--public-ip=${external.publicIP} differs from ${external.ext.name}'s address ${external.ifaceIP}: host-gw cannot work through NAT`,
        { field: "--public-ip", value: external.publicIP },
      );
    }
    for (const finding of await checkSysctls(external.ext.name)) {
      log.warn("kernel setting", {
        setting: finding.subject,
        value: finding.value,
        problem: finding.message,
      });
    }
    log.info("starting", {
      version: VERSION,
      store: flags.store,
      prefix: flags.etcdPrefix,
      network: formatCidr(config.network),
      iface: external.ext.name,
      ifaceIP: external.ifaceIP,
      publicIP: external.publicIP,
      ...(external.matched === undefined ? {} : { chosenBy: external.matched }),
      backend: config.backend.type,
    });
    const nexthops = await detectNexthops(netlink, flags.routeNexthops);
    if (nexthops.reason !== undefined)
      log.warn("the kernel has no nexthop objects (5.3 or later has them); routes use inline gateways", {
        error: nexthops.reason,
      });
    const wiring = wireFromFlags(flags, { config, external, netlink, nexthops: nexthops.mode });
    // vxlan also keeps ARP and FDB entries: their events come from the neigh group.
    const groups: MonitorGroup[] = ["route", "link", "addr"];
    if (config.backend.type === "vxlan") groups.push("neigh");
    if (nexthops.mode !== "unsupported") groups.push("nexthop");
    // Its own writes are recorded as they are acked; only other writers' changes come back as events.
    monitor = Monitor.open(undefined, { groups, skipSender: handle.portId });
    const events: KernelEvents = monitor;
    const running = new Agent({
      store,
      storeName: flags.store,
      prefix: flags.etcdPrefix,
      config,
      external,
      chooseExternal: () => chooseExternal(handle, flags),
      wiring,
      events,
      subnetFile: flags.subnetFile,
      ipMasq: flags.ipMasq,
      ttlSeconds: LEASE_TTL_SECONDS,
      renewMarginSeconds: flags.subnetLeaseRenewMarginMinutes * 60,
      firewallResyncSeconds: flags.iptablesResyncSeconds,
      log,
      metrics,
      clock: systemClock,
      onChange: () => {
        if (controller.signal.aborted) return;
        if (running.readiness().ready) notifier.ready();
        const { subnet, peers, routes } = running.summary();
        statusLine.update(statusText(subnet, peers, routes));
      },
    });
    source.attach(running);
    agent = running;
    await running.run(controller.signal);
    return 0;
  } catch (err) {
    if (isWeftError(err)) {
      process.stderr.write(`weft: ${err.message}\n`);
      return 1;
    }
    log.error("fatal", { error: err });
    return 1;
  } finally {
    await http?.stop(true);
    await control?.stop();
    statusLine.close();
    notifier.close();
    await monitor?.close();
    await store?.close();
    await netlink?.close();
  }
}
