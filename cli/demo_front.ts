/**
 * The demo's front end as a separate process (real Xen, dom0 loopback):
 * started by `xenchan demo` on the ffi backend, killed by it with SIGKILL.
 *
 *   <runtime> run [-A] cli/demo_front.ts --ref R --port P --requests N [--timeout-ms T]
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
import { openEventChannels, openGrantTable } from "../mod.ts";
import { runtimeLabel } from "./facts.ts";
import { attachFrontEnd, runFrontEnd } from "./split_driver.ts";

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
    },
    strict: true,
  });
  const ref = Number(values.ref);
  const backPort = Number(values.port);
  const requests = Number(values.requests);
  const timeoutMs = Number(values["timeout-ms"] ?? 30_000);
  if (![ref, backPort, requests, timeoutMs].every(Number.isSafeInteger)) {
    throw new Error("usage: demo_front.ts --ref R --port P --requests N [--timeout-ms T]");
  }
  const signal = AbortSignal.timeout(timeoutMs);
  const evtchn = await openEventChannels({ backend: "ffi" });
  const grants = await openGrantTable({ backend: "ffi" });
  const front = await attachFrontEnd(evtchn, grants, 0, backPort, ref, signal);
  say(`ready ${JSON.stringify({ pid: process.pid, port: front.port, runtime: runtimeLabel() })}`);
  const stats = await runFrontEnd({
    evtchn,
    port: front.port,
    ring: front.ring,
    requests,
    signal,
  });
  say(`done ${JSON.stringify(stats)}`);
  // Stay alive with the mapping in place: the back end kills this process.
  setInterval(() => {}, 1 << 30);
}

main().catch((error) => {
  say(`error ${(error as Error)?.message ?? String(error)}`);
  process.exit(1);
});
