/**
 * Guest domains end to end, in the dom0 booted by scripts/test_xen.mjs: the
 * XenStore daemon answers, a guest's output and exit status come back to dom0,
 * Deno and Bun inside a guest reach the guest's own /dev/xen/evtchn through
 * the project's FFI layer, dom0 and a running guest exchange events over a
 * real interdomain channel, and all of it again with the other xenstored.
 * Skipped with the reason anywhere else (tests/helpers/guest.ts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openEventChannels } from "../../mod.ts";
import {
  type GuestResult,
  runCommand,
  runInGuest,
  runningXenstored,
  startGuest,
  useXenstored,
  type XenstoredName,
} from "../helpers/guest.ts";
import { whyNoGuests } from "../helpers/guest.ts";
import { deadline } from "../helpers/xen.ts";

const skip = whyNoGuests() ?? false;
const SLOW = { timeout: 300_000 };

/** Code run by `deno eval` / `bun -e` in a guest: bind an unbound port for dom0 and print it. */
const BIND_FOR_DOM0 = [
  `import { openEventChannels } from "/xenchan/mod.ts";`,
  `const events = await openEventChannels({ backend: "ffi" });`,
  `const port = events.bindUnboundPort(0);`,
  `console.log("guest-port=" + port + " runtime=" + ("Deno" in globalThis ? "deno" : "bun"));`,
  `events.close();`,
].join(" ");

/** The guest side of the interdomain test: wait for dom0's event, answer it. */
const ECHO_ONE_EVENT = [
  `import { openEventChannels } from "/xenchan/mod.ts";`,
  `const events = await openEventChannels({ backend: "ffi" });`,
  `const port = events.bindUnboundPort(0);`,
  `console.log("listening=" + port);`,
  `const got = events.pendingSync(120000);`,
  `console.log("got=" + got);`,
  `if (got !== null) { events.unmask(got); events.notify(port); }`,
  `events.close();`,
].join(" ");

function evalCommand(runtime: "deno" | "bun", code: string): string {
  assert.ok(!code.includes("'"), "the code goes into single quotes");
  return runtime === "deno" ? `deno eval '${code}'` : `bun -e '${code}'`;
}

function report(label: string, r: GuestResult): void {
  const s = r.stats;
  console.log(
    `${label}: status ${r.status}` +
      (s
        ? `, ${s.memoryMb} MB, xl create ${s.createS} s, boot to script ${s.bootS} s, ` +
          `script ${s.scriptS} s, total ${s.totalS} s, Xen free ${s.freeMemoryMb} MB`
        : ""),
  );
}

function explain(r: GuestResult): string {
  return `status ${r.status}\n--- output ---\n${r.output}\n--- helper ---\n${r.stderr}`;
}

async function dom0Name(): Promise<string> {
  const r = await runCommand(["timeout", "20", "xenstore-read", "/local/domain/0/name"]);
  assert.equal(r.code, 0, `xenstore-read failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe("guest domains", { skip }, () => {
  it("xenstored runs and answers for dom0", SLOW, async () => {
    assert.notEqual(await runningXenstored(), null, "no xenstored runs in dom0");
    assert.equal(await dom0Name(), "Domain-0");
  });

  it("a busybox guest passes its output and exit status back", SLOW, async () => {
    const r = await runInGuest("echo hello from $XENCHAN_DOMID; exit 3", { runtime: "none" });
    report("busybox guest", r);
    assert.equal(r.status, 3, explain(r));
    assert.ok(r.stats, "no stats line");
    assert.equal(r.output, `hello from ${r.stats.domid}\n`);
  });

  for (const runtime of ["deno", "bun"] as const) {
    it(`${runtime} in a guest binds an unbound port for dom0 through FFI`, SLOW, async () => {
      const r = await runInGuest(evalCommand(runtime, BIND_FOR_DOM0), { runtime });
      report(`${runtime} guest`, r);
      assert.equal(r.status, 0, explain(r));
      const m = /guest-port=(\d+) runtime=(\w+)/.exec(r.output);
      assert.ok(m, `no port printed: ${explain(r)}`);
      assert.ok(Number(m[1]) > 0, `port ${m[1]}`);
      assert.equal(m[2], runtime);
    });
  }

  it("dom0 and a running guest exchange events over an interdomain channel", SLOW, async () => {
    await using guest = await startGuest(evalCommand("deno", ECHO_ONE_EVENT), { runtime: "deno" });
    const [, remote] = await guest.waitForOutput(/listening=(\d+)/, 120_000);
    using events = await openEventChannels({ backend: "ffi" });
    const local = events.bindInterdomain(guest.domid, Number(remote));
    events.notify(local);
    assert.equal(await events.pending({ signal: deadline(120_000) }), local);
    const r = await guest.wait();
    report("interdomain guest", r);
    assert.equal(r.status, 0, explain(r));
    assert.match(r.output, new RegExp(`got=${remote}\\b`));
  });

  it(
    "the other xenstored serves dom0 and guests too (switched within the boot)",
    SLOW,
    async () => {
      const first = await runningXenstored();
      assert.ok(first, "no xenstored runs in dom0");
      const other: XenstoredName = first === "oxenstored" ? "cxenstored" : "oxenstored";
      try {
        await useXenstored(other);
        assert.equal(await runningXenstored(), other);
        assert.equal(await dom0Name(), "Domain-0");
        const r = await runInGuest("echo on $XENCHAN_DOMID", { runtime: "none" });
        report(`busybox guest under ${other}`, r);
        assert.equal(r.status, 0, explain(r));
        assert.match(r.output, /^on \d+\n$/);
      } finally {
        await useXenstored(first);
      }
      assert.equal(await dom0Name(), "Domain-0");
    },
  );
});
