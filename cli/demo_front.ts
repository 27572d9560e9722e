/**
 * The demo's front end as a separate process (real Xen): started by
 * `xenchan demo` on the ffi backend, in dom0 (loopback, killed by it with
 * SIGKILL) or in a guest domain (cli/demo_guest.ts).
 *
 *   <runtime> run [-A] cli/demo_front.ts --ref R --port P --requests N [--timeout-ms T]
 *   <runtime> run [-A] cli/demo_front.ts --xenstore DIR --requests N [--timeout-ms T]
 *
 * With --xenstore (in a guest) it finds the back end's grant ref and port
 * in XenStore, DIR/ring-ref and DIR/event-channel (written by dom0), and,
 * after `done`, kills itself with SIGKILL when DIR/crash appears (the
 * guest's kernel then tears its mapping down).
 *
 * Binds to the back end's unbound port P of dom0, maps grant R of dom0 with
 * unmap notification (live byte + its port), prints `ready {json}`, runs
 * the requests, prints `done {json stats}`, then stays alive until killed
 * (its death is what the back end observes). On failure it prints
 * `error <message>` and exits with status 1.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { openEventChannels, openGrantTable, openXenStore, type XenStore } from "../mod.ts";
import { runtimeLabel } from "./facts.ts";
import { attachFrontEnd, runFrontEnd } from "./split_driver.ts";

/** What must stay alive until the process dies. */
const HELD: object[] = [];

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      ref: { type: "string" },
      port: { type: "string" },
      requests: { type: "string" },
      "timeout-ms": { type: "string" },
      xenstore: { type: "string" },
    },
    strict: true,
  });
  const requests = Number(values.requests);
  const timeoutMs = Number(values["timeout-ms"] ?? 30_000);
  const signal = AbortSignal.timeout(timeoutMs);
  const dir = values.xenstore;
  const xs = dir === undefined ? undefined : await openXenStore({ backend: "ffi" });
  const found = xs && dir ? await findBackEnd(xs, dir, signal) : undefined;
  const ref = found ? found.ref : Number(values.ref);
  const backPort = found ? found.port : Number(values.port);
  if (![ref, backPort, requests, timeoutMs].every(Number.isSafeInteger)) {
    throw new Error(
      "usage: demo_front.ts (--ref R --port P | --xenstore DIR) --requests N [--timeout-ms T]",
    );
  }
  const evtchn = await openEventChannels({ backend: "ffi" });
  const grants = await openGrantTable({ backend: "ffi" });
  const front = await attachFrontEnd(evtchn, grants, 0, backPort, ref, signal);
  // The ring loop holds only the page's bytes: keep the handles and the mapping reachable,
  // or a collector may release them (the leak backstop unmaps) while the page is in use.
  HELD.push(evtchn, grants, front.mapping);
  say(`ready ${JSON.stringify({ pid: process.pid, port: front.port, runtime: runtimeLabel() })}`);
  const stats = await runFrontEnd({
    evtchn,
    port: front.port,
    ring: front.ring,
    requests,
    signal,
  });
  say(`done ${JSON.stringify(stats)}`);
  if (xs && dir) {
    // In a guest: dom0 asks for the crash through XenStore.
    for await (const _ of xs.watch(`${dir}/crash`)) {
      if (await xs.read(`${dir}/crash`).then(() => true, () => false)) {
        process.kill(process.pid, "SIGKILL");
      }
    }
  }
  // Stay alive with the mapping in place: the back end kills this process.
  setInterval(() => {}, 1 << 30);
}

/** Waits (watching DIR) until DIR/ring-ref and DIR/event-channel both hold numbers. */
async function findBackEnd(
  xs: XenStore,
  dir: string,
  signal: AbortSignal,
): Promise<{ ref: number; port: number }> {
  const read = (name: string) => xs.read(`${dir}/${name}`).then(Number, () => NaN);
  for await (const _ of xs.watch(dir, { signal })) {
    const [ref, port] = [await read("ring-ref"), await read("event-channel")];
    if (Number.isSafeInteger(ref) && Number.isSafeInteger(port)) return { ref, port };
  }
  throw new Error(`no ring-ref and event-channel under ${dir} in time`);
}

main().catch((error) => {
  say(`error ${(error as Error)?.message ?? String(error)}`);
  process.exit(1);
});
