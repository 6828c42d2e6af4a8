/**
 * `HttpEndpoints.receive`: a body read through a sink chunk by chunk, under the same time limit and
 * failover as `request`, with the sink's own errors passed on untouched.
 */
import { expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { type BodySink, HttpEndpoints } from "../../stores/http.ts";

const A = "http://127.0.0.1:1";
const B = "http://127.0.0.1:2";

/** A body sent in `chunks`; after them it stalls (until aborted) when `stall`, else it ends. */
function body(
  chunks: readonly string[],
  signal: AbortSignal | null | undefined,
  stall = false,
): ReadableStream {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = chunks[next++];
      if (chunk !== undefined) controller.enqueue(new TextEncoder().encode(chunk));
      else if (!stall) controller.close();
      else {
        return new Promise<void>((_, reject) => {
          const fail = () => {
            controller.error(signal?.reason);
            reject(signal?.reason);
          };
          if (signal?.aborted) fail();
          signal?.addEventListener("abort", fail, { once: true });
        });
      }
    },
  });
}

/** A fetch whose answer per endpoint is `answers[endpoint]`; records each endpoint asked. */
function fakeFetch(
  answers: Record<string, (signal: AbortSignal | null | undefined) => Response>,
  asked: string[],
): typeof fetch {
  return Object.assign(
    async (input: string | URL | Request, init?: RequestInit) => {
      const endpoint = new URL(String(input)).origin;
      asked.push(endpoint);
      const answer = answers[endpoint];
      if (answer === undefined) throw new TypeError(`connect ECONNREFUSED ${endpoint}`);
      return answer(init?.signal);
    },
    { preconnect: fetch.preconnect },
  );
}

/** A sink collecting the chunks as text, counting them. */
function collect(): BodySink<{ text: string; chunks: number }> & { chunks: number } {
  let text = "";
  const decoder = new TextDecoder();
  return {
    chunks: 0,
    push(chunk) {
      this.chunks++;
      text += decoder.decode(chunk, { stream: true });
    },
    end() {
      return { text: text + decoder.decode(), chunks: this.chunks };
    },
  };
}

test("http receive - a body longer than textBodyBytes goes to the sink chunk by chunk; a shorter one is text", async () => {
  const options = {
    endpoints: [A],
    fetch: fakeFetch({ [A]: (s) => new Response(body(["[1,", "2", "]"], s), { status: 200 }) }, []),
  };
  // Five bytes: over 4, the two chunks held so far go first; within 5, or with no sink, text.
  const streamed = await new HttpEndpoints(options, 4).receive({ method: "GET", path: "/x" }, () =>
    collect(),
  );
  expect(streamed.read?.value).toEqual({ text: "[1,2]", chunks: 3 });
  expect(streamed.body).toBe("");
  expect(streamed.status).toBe(200);
  for (const [limit, sink] of [
    [5, () => collect()],
    [0, () => undefined],
  ] as const) {
    const text = await new HttpEndpoints(options, limit).receive({ method: "GET", path: "/x" }, sink);
    expect(text.read).toBeUndefined();
    expect(text.body).toBe("[1,2]");
  }
});

test("http receive - the time limit covers the whole body, and the next endpoint answers afresh", async () => {
  const asked: string[] = [];
  const sinks: ReturnType<typeof collect>[] = [];
  const http = new HttpEndpoints(
    {
      endpoints: [A, B],
      requestTimeoutMs: 200,
      fetch: fakeFetch(
        {
          [A]: (s) => new Response(body(["[1,"], s, true), { status: 200 }),
          [B]: (s) => new Response(body(["[2]"], s), { status: 200 }),
        },
        asked,
      ),
    },
    0,
  );
  const started = performance.now();
  const got = await http.receive({ method: "GET", path: "/x" }, () => {
    const sink = collect();
    sinks.push(sink);
    return sink;
  });
  expect(performance.now() - started).toBeGreaterThanOrEqual(190);
  expect(asked).toEqual([A, B]);
  expect(got.endpoint).toBe(B);
  expect(got.read?.value).toEqual({ text: "[2]", chunks: 1 });
  expect(sinks.map((s) => s.chunks)).toEqual([1, 1]);

  const alone = new HttpEndpoints(
    {
      endpoints: [A],
      requestTimeoutMs: 100,
      fetch: fakeFetch({ [A]: (s) => new Response(body(["[1,"], s, true), { status: 200 }) }, []),
    },
    0,
  );
  const err = await alone.receive({ method: "GET", path: "/x" }, () => collect()).catch((e: unknown) => e);
  expect(isStoreError(err, StoreErrorCode.Unavailable)).toBe(true);
  expect((err as Error).message).toContain("no answer within 100 ms");
});

test("http receive - an error of the sink ends the call as it is, without trying another endpoint", async () => {
  const asked: string[] = [];
  let cancelled = false;
  const http = new HttpEndpoints(
    {
      endpoints: [A, B],
      fetch: fakeFetch(
        {
          [A]: () =>
            new Response(
              new ReadableStream({
                pull: (c) => c.enqueue(new Uint8Array([0x78])),
                cancel: () => {
                  cancelled = true;
                },
              }),
              { status: 200 },
            ),
          [B]: (s) => new Response(body(["[2]"], s), { status: 200 }),
        },
        asked,
      ),
    },
    0,
  );
  const refused = new SyntaxError("not what the sink wants");
  let pushed = 0;
  const err = await http
    .receive({ method: "GET", path: "/x" }, () => ({
      push() {
        if (++pushed === 3) throw refused;
      },
      end: () => "never",
    }))
    .catch((e: unknown) => e);
  expect(err).toBe(refused);
  expect(asked).toEqual([A]);
  expect(pushed).toBe(3);
  await Bun.sleep(10);
  expect(cancelled).toBe(true);
});
