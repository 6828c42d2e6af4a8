/**
 * What `weft doctor` reports: one finding per check, `ok`, `WARN` or `FAIL`, what was found and how to
 * fix it, printed as one line per check or as JSON (`--json`). Any FAIL makes the exit status 1.
 */

export const Verdict = { Ok: "ok", Warn: "WARN", Fail: "FAIL" } as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** The checks, in the order they are printed. */
export const Check = {
  Agent: "agent",
  Store: "store",
  Config: "config",
  Lease: "lease",
  Iface: "iface",
  IpForward: "ip_forward",
  RpFilter: "rp_filter",
  ForwardPolicy: "forward-policy",
  Mtu: "mtu",
  GcThresh: "gc_thresh",
  FlannelLeftovers: "flannel-leftovers",
  SecondAgent: "second-agent",
} as const;
export type Check = (typeof Check)[keyof typeof Check];

export interface DoctorFinding {
  readonly check: Check;
  readonly status: Verdict;
  /** What is wrong (or, for ok, what was seen), with the values read. */
  readonly finding: string;
  /** What to do; empty for ok. */
  readonly fix: string;
}

export const ok = (check: Check, finding: string): DoctorFinding => ({
  check,
  status: Verdict.Ok,
  finding,
  fix: "",
});
export const warn = (check: Check, finding: string, fix: string): DoctorFinding => ({
  check,
  status: Verdict.Warn,
  finding,
  fix,
});
export const fail = (check: Check, finding: string, fix: string): DoctorFinding => ({
  check,
  status: Verdict.Fail,
  finding,
  fix,
});

const RANK: Readonly<Record<Verdict, number>> = { ok: 0, WARN: 1, FAIL: 2 };

/**
 * One finding out of several about the same check: the worst status; the problems (or, when all are
 * fine, the observations) joined, each fix once.
 */
export function combine(check: Check, parts: readonly DoctorFinding[]): DoctorFinding | undefined {
  if (parts.length === 0) return undefined;
  const worst = parts.reduce((a, b) => (RANK[b.status] > RANK[a.status] ? b : a)).status;
  const shown = worst === Verdict.Ok ? parts : parts.filter((p) => p.status !== Verdict.Ok);
  const fixes = [...new Set(shown.map((p) => p.fix).filter((f) => f !== ""))];
  return { check, status: worst, finding: shown.map((p) => p.finding).join("; "), fix: fixes.join("; ") };
}

/** Sorted in the order of `Check`. */
export function ordered(findings: readonly DoctorFinding[]): DoctorFinding[] {
  const order = Object.values(Check) as readonly string[];
  return [...findings].sort((a, b) => order.indexOf(a.check) - order.indexOf(b.check));
}

/** One line per finding: `FAIL  ip_forward        net.ipv4.ip_forward is 0 … — fix: …`. */
export function renderFindings(findings: readonly DoctorFinding[]): string {
  const width = Math.max(0, ...findings.map((f) => f.check.length));
  return findings
    .map(
      (f) =>
        `${f.status.padEnd(4)}  ${f.check.padEnd(width)}  ${f.finding}${f.fix === "" ? "" : ` — fix: ${f.fix}`}\n`,
    )
    .join("");
}

/** 1 when any check FAILs, else 0 (WARN alone is 0). */
export function exitStatus(findings: readonly DoctorFinding[]): 0 | 1 {
  return findings.some((f) => f.status === Verdict.Fail) ? 1 : 0;
}
