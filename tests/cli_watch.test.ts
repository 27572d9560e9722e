/**
 * `xenchan watch` in-process on the simulator: one line per event, each
 * port unmasked, stops at --count / --timeout / the caller's signal, and
 * unbinds everything.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bufferOutput } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { runWatch, watchOptions } from "../cli/watch.ts";
import { openEventChannels, SimHypervisor } from "../mod.ts";

const EVENT_LINE = /^\+\d+\.\d{3}s event (\d+): port (\d+) \((.+)\)$/;

function events(lines: readonly string[]): RegExpExecArray[] {
  return lines.map((l) => EVENT_LINE.exec(l)).filter((m): m is RegExpExecArray => m !== null);
}

describe("xenchan watch", () => {
  it("prints one line per event on a simulated backend and stops at --count", async () => {
    const hv = new SimHypervisor();
    const proc = hv.backend(0);
    using peer = await openEventChannels({ backend: hv.backend(0) });
    const out = bufferOutput();
    const options = watchOptions({ unbound: ["0"], virq: ["3"], count: "5" });
    let sent = 0;
    const code = await runWatch(options, out, {
      backend: proc,
      onReady: ([port]) => {
        const peerPort = peer.bindInterdomain(0, port);
        // each notify after the previous event was printed (and unmasked): none coalesce
        const next = () => {
          if (sent >= 4) return;
          sent++;
          peer.notify(peerPort);
          setTimeout(next, 5);
        };
        next();
        setTimeout(() => hv.raiseVirq(0, 3), 1);
      },
    });
    assert.equal(code, 0, out.stderr.join("\n"));
    const seen = events(out.stdout);
    assert.equal(seen.length, 5, out.text());
    assert.deepEqual(seen.map((m) => Number(m[1])), [1, 2, 3, 4, 5]);
    assert.equal(seen.filter((m) => m[3] === "VIRQ 3").length, 1);
    assert.equal(seen.filter((m) => m[3] === "unbound, for d0").length, 4);
    assert.match(out.text(), /stopped \(5 events\); 5 events, unbinding 2 ports/);
    assert.equal(proc.openHandles, 0, "the handle is closed");
    assert.equal(hv.stats(0).boundPorts, 1, "only the peer's port is still bound");
  });

  it("--simulate-notify drives the simulator's own peer (as the command line does)", async () => {
    const out = bufferOutput();
    const code = await main(
      [
        "watch",
        "--backend",
        "sim",
        "--unbound",
        "0",
        "--simulate-notify",
        "3",
        "--interval",
        "0.01",
        "--count",
        "3",
      ],
      out,
    );
    assert.equal(code, 0, out.stderr.join("\n"));
    assert.equal(events(out.stdout).length, 3);
  });

  it("--timeout before --count exits 1; the caller's signal exits 0", async () => {
    const timedOut = bufferOutput();
    const code = await main([
      "watch",
      "--backend",
      "sim",
      "--unbound",
      "0",
      "--timeout",
      "0.05",
      "--count",
      "2",
    ], timedOut);
    assert.equal(code, 1);
    assert.match(timedOut.text(), /stopped \(timeout\); 0 events/);

    const interrupted = bufferOutput();
    const controller = new AbortController();
    const running = main(
      ["watch", "--backend", "sim", "--virq", "3"],
      interrupted,
      controller.signal,
    );
    setTimeout(() => controller.abort(), 20);
    assert.equal(await running, 0);
    assert.match(interrupted.text(), /stopped \(interrupted\); 0 events, unbinding 1 port/);
  });

  it("a bind the backend refuses is an error (exit 1) naming the port", async () => {
    const out = bufferOutput();
    assert.equal(await main(["watch", "--backend", "sim", "--interdomain", "0:77"], out), 1);
    assert.match(out.stderr.join("\n"), /cannot bind interdomain, d0 port 77: .*EINVAL/);
  });
});
