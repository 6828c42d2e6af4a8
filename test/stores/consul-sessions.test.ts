/**
 * The consul driver's session book on a fake clock, with a scripted transport: a session that the
 * server would keep longer than its key's TTL is destroyed by the book when the TTL runs out on the
 * store's clock, a renewal moves that end, and close cancels it.
 */
import { expect, test } from "bun:test";
import { SessionBook } from "../../stores/consul/sessions.ts";
import type { HttpAnswer, HttpRequest } from "../../stores/http.ts";
import { FakeClock } from "./fixtures/fake-clock.ts";

/** A Consul server whose shortest session is 10 s; it records every request. */
function server() {
  const requests: HttpRequest[] = [];
  let created = 0;
  const answer = (status: number, body: string): HttpAnswer => ({
    status,
    body,
    headers: new Headers(),
    endpoint: "http://consul.test:8500",
  });
  const send = async (req: HttpRequest): Promise<HttpAnswer> => {
    requests.push(req);
    if (req.path === "/v1/session/create") {
      const ttl = (JSON.parse(req.body ?? "{}") as { TTL?: string }).TTL ?? "";
      if (Number.parseInt(ttl, 10) < 10_000) {
        return answer(500, `Invalid Session TTL '${ttl}', must be between [10s=24h0m0s]`);
      }
      created += 1;
      return answer(200, JSON.stringify({ ID: `session-${created}` }));
    }
    return answer(200, "true");
  };
  const destroyed = () =>
    requests.filter((r) => r.path.startsWith("/v1/session/destroy/")).map((r) => r.path.split("/").pop());
  return { send, destroyed };
}

test("consul sessions - a key's TTL runs out on the injected clock: its session is destroyed then, not before; a renewal moves the end", async () => {
  const clock = new FakeClock();
  const consul = server();
  const book = new SessionBook(consul.send, { clock });
  // A 10 s key needs a 5 s session; the server's minimum is 10 s, which Consul may keep for 20 s.
  const session = await book.create("/k", 10_000);
  expect(session.sessionMs).toBe(10_000);
  book.own(session);
  expect(book.secondsLeft(session.id)).toBe(10);

  await clock.advance(4_000);
  expect(book.secondsLeft(session.id)).toBe(6);
  await clock.advance(5_999);
  expect(consul.destroyed()).toEqual([]);

  book.arm(session); // renewed 1 ms before its end: 10 s from now
  expect(book.secondsLeft(session.id)).toBe(10);
  await clock.advance(9_999);
  expect(consul.destroyed()).toEqual([]);
  expect(book.get(session.id)).toBe(session);

  await clock.advance(1);
  expect(consul.destroyed()).toEqual([session.id]);
  expect(book.get(session.id)).toBeUndefined();
});

test("consul sessions - close cancels the waits on the clock: no session is destroyed afterwards", async () => {
  const clock = new FakeClock();
  const consul = server();
  const book = new SessionBook(consul.send, { clock });
  const session = await book.create("/k", 10_000);
  book.own(session);
  expect(clock.pending).toBe(1);
  book.close();
  expect(clock.pending).toBe(0);
  await clock.advance(60_000);
  expect(consul.destroyed()).toEqual([]);
});

test("consul sessions - a session Consul ends on time by itself needs no wait on the clock", async () => {
  const clock = new FakeClock();
  const consul = server();
  const book = new SessionBook(consul.send, { clock });
  const session = await book.create("/k", 60_000); // a 30 s session: Consul ends it within 60 s
  book.own(session);
  expect(clock.pending).toBe(0);
  await clock.advance(30_000);
  expect(book.secondsLeft(session.id)).toBe(30);
  expect(consul.destroyed()).toEqual([]);
});
