/**
 * The demo's text output: the human-readable summary of a DemoReport
 * (cli/demo_report.ts), section by section: set-up, exchange, crash, domain
 * death, what ran where, checks, result. It reads only the report, so every
 * scenario prints the same way.
 *
 * @module
 */
import { grouped, type Output } from "./io.ts";
import type { DemoReport } from "./demo_report.ts";
import { LIVE_OFFSET, RING_SIZE } from "./ring.ts";

function ms(value: number): string {
  return value < 10 ? `${value.toFixed(2)} ms` : `${Math.round(value)} ms`;
}

/**
 * Prints `r` to `out.log` as the human-readable summary, one line per call.
 * On real Xen with the front end in dom0 the title says "(dom0 loopback)".
 * Throws only what `out.log` throws; reentrant.
 */
export function printDemo(r: DemoReport, out: Output): void {
  const { setup, exchange, crash } = r;
  const real = r.backend === "ffi";
  const loopback = real && setup.frontDomid === setup.backDomid;
  out.log(
    `xenchan demo: split driver, back end d${setup.backDomid} <-> front end d${setup.frontDomid}` +
      (loopback ? " (dom0 loopback)" : ""),
  );
  out.log(`backend: ${real ? "ffi (REAL Xen)" : "sim (simulator)"}, ${r.runtime}; ${r.reason}`);
  out.log("");
  printSetup(r, out);
  out.log("");
  printExchange(exchange, out);
  out.log("");
  out.log("crash of the front end");
  out.log(`  ${crash.how}`);
  out.log(
    `  live byte ${LIVE_OFFSET}: ${crash.liveBefore} before the crash, ${crash.liveAfter} after`,
  );
  out.log(
    crash.eventPort === null
      ? "  unmap-notify event: NOT received"
      : `  unmap-notify event on back-end port ${crash.eventPort}, ${
        ms(crash.eventMs ?? 0)
      } after the crash`,
  );
  out.log(
    r.death.status === "skipped"
      ? "domain death: SKIPPED"
      : `domain destroyed (d${setup.frontDomid})`,
  );
  out.log(`  ${r.death.status === "received" ? "osevent: " : ""}${r.death.detail}`);
  out.log("");
  out.log("what ran where");
  const width = Math.max(...r.parts.map(([what]) => what.length));
  for (const [what, where] of r.parts) out.log(`  ${what.padEnd(width)}  ${where}`);
  out.log("");
  printChecks(r, out);
}

function printSetup({ setup }: DemoReport, out: Output): void {
  out.log("setup");
  out.log(
    `  back end  d${setup.backDomid}: shared the ring page as grant ref ${setup.ref}; ` +
      `unbound port ${setup.backPort} offered to d${setup.frontDomid}`,
  );
  out.log(
    `  front end d${setup.frontDomid}: bound port ${setup.frontPort} to it; mapped ref ${setup.ref} ` +
      `with unmap-notify (live byte ${LIVE_OFFSET} = 1, port ${setup.frontPort})`,
  );
  out.log(`  front end runs as: ${setup.frontEnd}`);
  out.log(`  event delivery ABI: ${setup.abi}`);
}

function printExchange(exchange: DemoReport["exchange"], out: Output): void {
  const f = exchange.front;
  const b = exchange.back;
  const bytes = f.bytesWritten + b.bytesWritten;
  const perSecond = exchange.ms > 0 ? (exchange.requests * 1000) / exchange.ms : 0;
  out.log(
    `exchange: ${
      grouped(exchange.requests)
    } requests over a ${RING_SIZE}-slot ring (Xen ring.h protocol)`,
  );
  out.log(
    `  requests ${grouped(f.requests)} sent, ${grouped(b.responses)} answered, ` +
      `${grouped(f.responses)} responses checked, ${f.errors.length} wrong`,
  );
  out.log(
    `  bytes moved through the shared page: ${grouped(bytes)} ` +
      `(requests ${grouped(f.bytesWritten)}, responses ${grouped(b.bytesWritten)})`,
  );
  out.log(
    `  events front -> back: ${grouped(f.notifiesSent)} notifications sent, ` +
      `${grouped(b.eventsReceived)} events received`,
  );
  out.log(
    `  events back -> front: ${grouped(b.notifiesSent)} notifications sent, ` +
      `${grouped(f.eventsReceived)} events received`,
  );
  out.log(`  (ring.h hold-off: a side notifies only when the other asked to be woken)`);
  out.log(`  time: ${ms(exchange.ms)} (${grouped(perSecond)} requests/s)`);
}

function printChecks(r: DemoReport, out: Output): void {
  out.log("checks");
  for (const c of r.checks) out.log(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  for (const s of r.skipped) out.log(`  skip ${s}`);
  const passed = r.checks.filter((c) => c.ok).length;
  out.log("");
  out.log(
    `result: ${r.ok ? "PASS" : "FAIL"} (${passed} of ${r.checks.length} checks passed` +
      `${r.skipped.length ? `, ${r.skipped.length} skipped` : ""}) in ${ms(r.ms)}`,
  );
}
