/**
 * `/run/flannel/subnet.env`, byte-compatible with flanneld's `WriteSubnetFile`:
 * ```
 * FLANNEL_NETWORK=10.5.0.0/16
 * FLANNEL_SUBNET=10.5.72.1/24      (the first host address of the lease)
 * FLANNEL_MTU=1450
 * FLANNEL_IPMASQ=false
 * ```
 * (`FLANNEL_IPV6_NETWORK` / `FLANNEL_IPV6_SUBNET` after the IPv4 lines only when IPv6 is enabled.)
 * Written atomically like renameio with IgnoreUmask: a temporary file in the same directory, fsync,
 * chmod 0644, rename; the directory is created 0755. Read back like godotenv: a bad line or value is
 * ignored with a reason, never a crash.
 */

import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { isIPv6 } from "node:net";
import { basename, dirname, join } from "node:path";
import { errorMessage, WeftError, WeftErrorCode } from "../errors.ts";
import type { Logger } from "../log.ts";
import { firstHost, formatCidr, formatIpv4, type Ipv4Cidr, tryParseCidr } from "../net/ipv4.ts";

/** What the agent writes after it holds a lease. */
export interface SubnetEnvContent {
  readonly network: Ipv4Cidr;
  /** The leased subnet (its network address); written as its first host address. */
  readonly subnet: Ipv4Cidr;
  readonly mtu: number;
  readonly ipMasq: boolean;
  /** Already formatted IPv6 lines (`2001:cafe:42::/56`, `2001:cafe:42::1/64`) when IPv6 is enabled. */
  readonly ipv6?: { readonly network: string; readonly subnet: string } | undefined;
}

/** A line or value of an env file that was not used, and why. */
export interface EnvIssue {
  /** One-based line number; 0 for problems with the whole file. */
  readonly line: number;
  readonly key?: string | undefined;
  readonly reason: string;
}

/** The KEY=VALUE pairs of an env file. */
export interface EnvFile {
  readonly values: Readonly<Record<string, string>>;
  readonly ignored: readonly EnvIssue[];
}

/** What a previous subnet.env says, each field present only when it parsed cleanly. */
export interface PreviousSubnetEnv {
  readonly network?: Ipv4Cidr | undefined;
  /** The network of `FLANNEL_SUBNET` (`10.5.72.1/24` → `10.5.72.0/24`), as flanneld reads it back. */
  readonly subnet?: Ipv4Cidr | undefined;
  readonly mtu?: number | undefined;
  readonly ipMasq?: boolean | undefined;
  readonly ipv6Network?: string | undefined;
  readonly ipv6Subnet?: string | undefined;
  readonly ignored: readonly EnvIssue[];
}

/** The exact text flanneld writes. */
export function renderSubnetEnv(content: SubnetEnvContent): string {
  let text = `FLANNEL_NETWORK=${formatCidr(content.network)}\n`;
  text += `FLANNEL_SUBNET=${formatIpv4(firstHost(content.subnet))}/${content.subnet.prefixLen}\n`;
  if (content.ipv6 !== undefined) {
    text += `FLANNEL_IPV6_NETWORK=${content.ipv6.network}\nFLANNEL_IPV6_SUBNET=${content.ipv6.subnet}\n`;
  }
  return `${text}FLANNEL_MTU=${content.mtu}\nFLANNEL_IPMASQ=${content.ipMasq}\n`;
}

/** Write subnet.env atomically (mode 0644, directory 0755). Throws `WeftError` IO naming the path. */
export async function writeSubnetEnv(path: string, content: SubnetEnvContent): Promise<void> {
  await writeFileAtomic(path, renderSubnetEnv(content), 0o644);
}

/**
 * Replace `path` with `data` so readers see the old or the new file, never a partial one: temporary file
 * in the same directory, fsync, chmod (umask ignored), rename, then fsync the directory.
 */
export async function writeFileAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await makeDirectories(dir);
    const file = await open(temp, "wx", mode);
    try {
      await file.writeFile(data);
      await chmod(temp, mode);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw new WeftError(WeftErrorCode.Io, `cannot write ${path}: ${errorMessage(err)}`, { path, cause: err });
  }
  const directory = await open(dir, "r").catch(() => undefined);
  if (directory !== undefined) {
    await directory.sync().catch(() => undefined);
    await directory.close();
  }
}

/** `mkdir -p` whose new directories are 0755 whatever the umask (existing ones are left alone). */
async function makeDirectories(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true, mode: 0o755 });
  if (created === undefined) return;
  for (let path = dir; path.length >= created.length; path = dirname(path)) {
    await chmod(path, 0o755);
    if (path === created) break;
  }
}

const KEY = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/**
 * Parse env-file text like godotenv: `KEY=VALUE` or `KEY: VALUE`, optional `export `, `#` comment lines,
 * `'single'` (literal) or `"double"` (with `\n \" \\` escapes) quoted values, ` #` comments after unquoted
 * values. No variable expansion. Bad lines are listed in `ignored`; a repeated key: the last one wins.
 */
export function parseEnvText(text: string): EnvFile {
  const values: Record<string, string> = {};
  const ignored: EnvIssue[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    let rest = raw.trim();
    if (rest === "" || rest.startsWith("#")) return;
    if (rest.startsWith("export ")) rest = rest.slice("export ".length).trimStart();
    const separator = rest.search(/[=:]/);
    if (separator < 0) {
      ignored.push({ line, reason: `no "=" in ${JSON.stringify(raw)}` });
      return;
    }
    const key = rest.slice(0, separator).trim();
    if (!KEY.test(key)) {
      ignored.push({ line, key, reason: `${JSON.stringify(key)} is not a variable name` });
      return;
    }
    const value = parseValue(rest.slice(separator + 1).trim());
    if (typeof value === "object") {
      ignored.push({ line, key, reason: value.error });
      return;
    }
    values[key] = value;
  });
  return { values, ignored };
}

function parseValue(text: string): string | { error: string } {
  const quote = text[0];
  if (quote === "'" || quote === '"') {
    let out = "";
    for (let i = 1; i < text.length; i++) {
      const ch = text[i];
      if (ch === quote) return out;
      if (quote === '"' && ch === "\\" && i + 1 < text.length) {
        const escaped = text[++i];
        out += escaped === "n" ? "\n" : escaped === "r" ? "\r" : escaped === "t" ? "\t" : (escaped ?? "");
        continue;
      }
      out += ch;
    }
    return { error: `unterminated ${quote} quote` };
  }
  const comment = text.search(/\s#/);
  return (comment < 0 ? text : text.slice(0, comment)).trimEnd();
}

/** The previous subnet.env's values as flanneld reads them back (`net.ParseCIDR`, one value per key). */
export function interpretSubnetEnv(file: EnvFile): PreviousSubnetEnv {
  const ignored: EnvIssue[] = [...file.ignored];
  const single = (key: string): string | undefined => {
    const value = file.values[key];
    if (value === undefined) return undefined;
    if (value.includes(",")) {
      ignored.push({ line: 0, key, reason: `more than one value in ${JSON.stringify(value)}` });
      return undefined;
    }
    return value;
  };
  const cidr = (key: string): Ipv4Cidr | undefined => {
    const value = single(key);
    if (value === undefined) return undefined;
    const parsed = tryParseCidr(value, "clear");
    if (parsed.ok) return parsed.value;
    ignored.push({ line: 0, key, reason: `${JSON.stringify(value)} is not an IPv4 CIDR: ${parsed.reason}` });
    return undefined;
  };
  const ipv6 = (key: string): string | undefined => {
    const value = single(key);
    if (value === undefined) return undefined;
    const [address = "", length = "", ...rest] = value.split("/");
    if (isIPv6(address) && /^[0-9]{1,3}$/.test(length) && Number(length) <= 128 && rest.length === 0)
      return value;
    ignored.push({ line: 0, key, reason: `${JSON.stringify(value)} is not an IPv6 CIDR` });
    return undefined;
  };
  const mtuText = single("FLANNEL_MTU");
  let mtu: number | undefined;
  if (mtuText !== undefined) {
    if (/^[1-9][0-9]{0,5}$/.test(mtuText)) mtu = Number(mtuText);
    else
      ignored.push({
        line: 0,
        key: "FLANNEL_MTU",
        reason: `${JSON.stringify(mtuText)} is not a positive number`,
      });
  }
  const masqText = single("FLANNEL_IPMASQ");
  let ipMasq: boolean | undefined;
  if (masqText === "true" || masqText === "false") ipMasq = masqText === "true";
  else if (masqText !== undefined) {
    ignored.push({
      line: 0,
      key: "FLANNEL_IPMASQ",
      reason: `${JSON.stringify(masqText)} is not true or false`,
    });
  }
  return {
    network: cidr("FLANNEL_NETWORK"),
    subnet: cidr("FLANNEL_SUBNET"),
    mtu,
    ipMasq,
    ipv6Network: ipv6("FLANNEL_IPV6_NETWORK"),
    ipv6Subnet: ipv6("FLANNEL_IPV6_SUBNET"),
    ignored,
  };
}

/**
 * Read a previous subnet.env. `undefined` when the file does not exist; any other read problem is
 * returned as an ignored reason (the agent then allocates as if there were no file), never thrown.
 */
export async function readSubnetEnv(path: string): Promise<PreviousSubnetEnv | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return { ignored: [{ line: 0, reason: `cannot read ${path}: ${errorMessage(err)}` }] };
  }
  return interpretSubnetEnv(parseEnvText(text));
}

/**
 * The subnet the last subnet.env names (flanneld PR #752): when this host's lease is gone (it expired
 * while the host was down, or was deleted) that subnet is taken again if still free, so docker's
 * --bip and the running containers stay valid. A file that cannot be used is reported and ignored.
 */
export async function previousSubnet(path: string, log: Logger): Promise<Ipv4Cidr | undefined> {
  const previous = await readSubnetEnv(path);
  for (const issue of previous?.ignored ?? []) {
    log.warn("ignoring part of the previous subnet file", {
      path,
      ...(issue.key === undefined ? {} : { key: issue.key }),
      reason: issue.reason,
    });
  }
  return previous?.subnet;
}
