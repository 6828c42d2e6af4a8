/**
 * Client TLS of the store drivers: telling a TLS failure (a server certificate the client does not
 * trust, a handshake the server refused, an unreadable PEM file) apart from an unreachable server, so
 * that the message says what to fix instead of "check that the server runs". The TLS files come from
 * the agent's `--etcd-certfile`, `--etcd-keyfile` and `--etcd-cafile`, whichever store is used.
 */
import type { StoreOptions } from "./store.ts";

export type TlsFiles = NonNullable<StoreOptions["tls"]>;

/** Certificate verification failures (OpenSSL/BoringSSL codes as Node and Bun report them). */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_CHAIN_TOO_LONG",
  "INVALID_CA",
  "CERT_REJECTED",
]);
const EXPIRED = new Set(["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]);
const WRONG_NAME = new Set(["ERR_TLS_CERT_ALTNAME_INVALID", "HOSTNAME_MISMATCH"]);
/** The same failures as clients that give only a message word them. */
const UNTRUSTED_TEXT =
  /unable to verify the first certificate|self[- ]signed certificate|unable to get (local )?issuer certificate/i;

const FLAG = { certFile: "--etcd-certfile", keyFile: "--etcd-keyfile", caFile: "--etcd-cafile" } as const;

/** The error and its causes, outermost first (bounded: cause chains can loop). */
function chain(err: unknown): { code: string; message: string }[] {
  const out: { code: string; message: string }[] = [];
  let at: unknown = err;
  for (let depth = 0; depth < 5 && at instanceof Error; depth++) {
    const code = (at as Error & { code?: unknown }).code;
    out.push({ code: typeof code === "string" ? code : "", message: at.message });
    if (at.cause === at) break;
    at = at.cause;
  }
  return out;
}

/**
 * What went wrong, in words that name the file and flag to fix, when `err` (from fetch or a NATS
 * connect) is a TLS failure; undefined for anything else. No secret is part of it: only file paths.
 */
export function describeTlsFailure(err: unknown, tls: TlsFiles | undefined): string | undefined {
  for (const { code, message } of chain(err)) {
    const said = code !== "" && !message.includes(code) ? `${code}: ${message}` : message;
    if (UNTRUSTED.has(code) || (code === "" && UNTRUSTED_TEXT.test(message))) {
      const ca =
        tls?.caFile === undefined
          ? `no ${FLAG.caFile} is given, so only the system's CA certificates are trusted: give the CA that signed the server's certificate with ${FLAG.caFile}`
          : `check that ${tls.caFile} (${FLAG.caFile}) holds the CA that signed the server's certificate`;
      return `TLS: the server's certificate is not trusted (${said}); ${ca}`;
    }
    if (EXPIRED.has(code)) return `TLS: the server's certificate is not valid now (${said})`;
    if (WRONG_NAME.has(code)) {
      return `TLS: the server's certificate does not name the host of the endpoint (${said}); use an endpoint host that is in the certificate's subjectAltName`;
    }
    if (/does not support '?tls/i.test(message)) {
      return `TLS: the server does not offer TLS (${said}), but TLS files are given (${FLAG.certFile}, ${FLAG.keyFile}, ${FLAG.caFile}): enable TLS on the server or drop the TLS flags`;
    }
    if (code === "EPROTO" || /TLS handshake|handshake failure|tlsv1 alert|ssl alert/i.test(message)) {
      const client =
        tls?.certFile === undefined
          ? `the server may require a client certificate (${FLAG.certFile} and ${FLAG.keyFile})`
          : `the server may not accept the client certificate ${tls.certFile} (${FLAG.certFile})`;
      return `TLS: the handshake failed (${said}): ${client}, or it does not speak TLS on this port`;
    }
    for (const field of ["certFile", "keyFile", "caFile"] as const) {
      const path = tls?.[field];
      if (path !== undefined && message.includes(path)) {
        return `TLS: cannot read ${path} (${FLAG[field]}): ${said}`;
      }
    }
  }
  return undefined;
}

/** The URL (or comma-separated URLs) with every `user:password@` replaced, for messages and logs. */
export function withoutUserinfo(url: string): string {
  return url.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@,\s]*@/g, "$1<redacted>@");
}
