/**
 * etcd endpoints as etcd's Go client (client/v3 internal/endpoint, which flanneld uses) reads them:
 * `http(s)://host[:port]`, of which it uses only the host (a path, query or user info is ignored), or a
 * bare `host:port`, which it dials with TLS when a TLS config is set — flanneld sets one only when both
 * --etcd-keyfile and --etcd-certfile are given — and in clear otherwise. weft's etcd drivers need URLs,
 * so a bare endpoint gets the scheme the Go client would use; anything else is refused.
 */

/** The endpoints as URLs, with what was changed; or the rule an endpoint breaks. */
export type EtcdEndpoints =
  | {
      readonly endpoints: readonly string[];
      /** Endpoints given without a scheme. */
      readonly bare: readonly string[];
      /** Origins of URLs whose path, query or user info was dropped (the original is not kept: it may hold a password). */
      readonly trimmed: readonly string[];
    }
  | { readonly rule: string };

/** At most 200 characters of an endpoint, for a rule (the message names the whole flag value already). */
function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$/;

export function readEtcdEndpoints(items: readonly string[], clientCert: boolean): EtcdEndpoints {
  const endpoints: string[] = [];
  const bare: string[] = [];
  const trimmed: string[] = [];
  for (const item of items) {
    if (!item.includes("://")) {
      const port = Number(HOST_PORT.exec(item)?.[2] ?? 0);
      if (port < 1 || port > 65_535) {
        return {
          rule: `${clip(item)} is neither a URL (http://host:port, https://host:port) nor host:port with a port 1..65535`,
        };
      }
      bare.push(item);
      endpoints.push(`${clientCert ? "https" : "http"}://${item}`);
      continue;
    }
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      return { rule: `${clip(item)} is not a valid URL` };
    }
    if (url.protocol === "unix:" || url.protocol === "unixs:") {
      return {
        rule: `${url.protocol}// endpoints are not supported: weft talks to etcd over HTTP; use http://host:port or https://host:port`,
      };
    }
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
      return { rule: `${clip(item)} must be http://host:port or https://host:port` };
    }
    const extra = url.pathname !== "/" || url.search !== "" || url.hash !== "";
    if (extra || url.username !== "" || url.password !== "") {
      trimmed.push(url.origin);
      endpoints.push(url.origin);
    } else {
      endpoints.push(item);
    }
  }
  return { endpoints, bare, trimmed };
}
