/**
 * The vchan ring code under real parallelism: a producer and a consumer in
 * two Workers share a SharedArrayBuffer laid out like the vchan page (header
 * and ring), and push 4 MiB (thousands of ring laps) through rings of order 10, 12 and 14 in chunks
 * of random size. Every byte is position-dependent, so a reader that saw an
 * index before the data behind it (stale bytes from the previous lap), or a
 * torn or cached index, fails the check; an index the other thread saw out
 * of order would show up as a RingFault. This exercises the Atomics-based
 * ordering that layout.ts describes on the CPU the tests run on (x86-64
 * here: a strongly ordered machine, so it mostly tests the JIT's side: no
 * cached or reordered index accesses).
 *
 * The two Workers are started once and run the job of every order: under
 * Deno each Worker start type-checks the worker module graph (`deno test`
 * checks, and a Worker's modules are a graph of their own), which costs
 * seconds per start and was nearly all of this file's time with a Worker
 * pair per order.
 *
 * @module
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { OFFSET, VchanHeader } from "../plugins/vchan/layout.ts";
import { RingMemory, RingReader, RingWriter } from "../plugins/vchan/ring.ts";

interface Result {
  readonly ok: boolean;
  readonly bytes: number;
  readonly firstBad: number;
  readonly faults: string[];
}

/** One long-lived Worker running jobs one at a time (a job's reply is the next message). */
class RingWorker {
  readonly #worker = new Worker(new URL("./fixtures/vchan_ring_worker.ts", import.meta.url), {
    type: "module",
  });
  #pending?: { resolve: (r: Result) => void; reject: (e: Error) => void };
  #failed?: Error;

  constructor() {
    this.#worker.onmessage = (event: MessageEvent<Result>) => {
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.resolve(event.data);
    };
    this.#worker.onerror = (event) => {
      event.preventDefault?.();
      this.#failed = new Error(`worker failed: ${(event as ErrorEvent).message}`);
      this.#pending?.reject(this.#failed);
      this.#pending = undefined;
    };
  }

  /** Posts `job`; resolves with its result. One job at a time. */
  run(job: Record<string, unknown>): Promise<Result> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#pending) return Promise.reject(new Error("a job is already running"));
    return new Promise<Result>((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#worker.postMessage(job);
    });
  }

  terminate(): void {
    this.#worker.terminate();
    this.#pending?.reject(new Error("worker terminated"));
    this.#pending = undefined;
  }
}

let pair: { producer: RingWorker; consumer: RingWorker } | undefined;

/** The producer and consumer Workers, started by the first order's test. */
function workers(): { producer: RingWorker; consumer: RingWorker } {
  pair ??= { producer: new RingWorker(), consumer: new RingWorker() };
  return pair;
}

// After the file's last test, whichever tests ran (a filter may select one order).
after(() => {
  pair?.producer.terminate();
  pair?.consumer.terminate();
  pair = undefined;
});

for (const order of [10, 12, 14]) {
  test(`ring order ${order}: 4 MiB between two threads, every byte checked [vchan:threads]`, async () => {
    const page = new SharedArrayBuffer(4096);
    const ring = new SharedArrayBuffer(1 << order);
    const bell = new SharedArrayBuffer(8);
    const header = new VchanHeader(new Uint8Array(page));
    header.store16(OFFSET.leftOrder, order);
    const total = 4 << 20;
    const segment = Math.min(4096, 1 << order);
    const common = { page, ring, bell, segment, total };
    const { producer, consumer } = workers();
    const [produced, consumed] = await Promise.all([
      producer.run({ ...common, role: "producer", seed: 7 }),
      consumer.run({ ...common, role: "consumer", seed: 9 }),
    ]);
    assert.deepEqual(produced.faults, []);
    assert.deepEqual(consumed.faults, []);
    assert.equal(produced.bytes, total);
    assert.equal(consumed.bytes, total);
    assert.equal(consumed.firstBad, -1, `byte ${consumed.firstBad} was wrong`);
    assert.equal(header.load32(OFFSET.leftProd), total >>> 0);
    assert.equal(header.load32(OFFSET.leftCons), total >>> 0);
  });
}

test("ring indices wrap at 2^32 and a corrupted index is a RingFault, never a bad copy [vchan:threads]", () => {
  const page = new Uint8Array(4096);
  const header = new VchanHeader(page);
  const start = 0xffffff00;
  header.store32(OFFSET.leftCons, start);
  header.store32(OFFSET.leftProd, start);
  const memory = new RingMemory([page.subarray(1024, 2048)]);
  const writer = new RingWriter(header, "left", memory);
  const reader = new RingReader(header, "left", memory);
  for (let i = 0; i < 2000; i++) {
    const n = Math.min(writer.space(), 1 + (i % 700));
    writer.put(new Uint8Array(n).fill(i & 0xff));
    assert.deepEqual(reader.take(reader.ready()), new Uint8Array(n).fill(i & 0xff));
  }
  assert.ok(header.load32(OFFSET.leftProd) < start, "the index wrapped");
  header.store32(OFFSET.leftProd, (header.load32(OFFSET.leftCons) + 1025) >>> 0);
  assert.throws(() => reader.ready(), /exceeds the ring size 1024/);
  assert.throws(() => writer.space(), /wrote the producer index this end owns/);
});
