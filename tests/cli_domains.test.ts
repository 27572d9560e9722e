/**
 * `xenchan domains`: the help, exit 2 on bad arguments, the table and
 * --follow on the simulator (--simulate, exact event lines of the scripted
 * lifecycle), and the real-Xen path on fakes of libxenctrl and XenStore
 * (names, states, memory, events, everything closed); off Xen it exits 1
 * and says what to do.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { domainsOptions, type DomainXenStore, realWorld, runDomains } from "../cli/domains.ts";
import { bufferOutput } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { runCli } from "./helpers/child.ts";
import {
  FakeDomainControl,
  fakeDomainInfo,
  FakeReleaseWatch,
  settle,
} from "./helpers/domain_fakes.ts";
import { whyNoXen } from "./helpers/xen.ts";

const offXen = (await whyNoXen()) !== null;

/** The event lines of a --follow run, without their timestamps. */
function eventLines(lines: readonly string[]): string[] {
  return lines.filter((l) => /^\+\d+\.\d{3}s /.test(l)).map((l) => l.replace(/^\+\S+ /, ""));
}

/** A fake dom0 XenStore: the watch of FakeReleaseWatch plus names. */
function fakeXenStore(names: Record<number, string>) {
  const watch = new FakeReleaseWatch();
  let closes = 0;
  const xs: DomainXenStore = {
    watch: (path, options) => watch.watch(path, options),
    read: (path) => {
      const m = /^\/local\/domain\/(\d+)\/name$/.exec(path);
      return Promise.resolve(m ? names[Number(m[1])] : undefined);
    },
    close: () => void closes++,
  };
  return { xs, watch, closes: () => closes };
}

describe("xenchan domains: arguments", () => {
  it("--help describes the command and exits 0", async () => {
    const out = bufferOutput();
    assert.equal(await main(["domains", "--help"], out), 0);
    assert.match(out.text(), /Usage: xenchan domains/);
    assert.match(out.text(), /--follow/);
    assert.match(out.text(), /--simulate/);
    const top = bufferOutput();
    await main(["--help"], top);
    assert.match(top.text(), /domains +list domains/);
  });

  for (
    const [args, message] of [
      [["--count", "3"], /--count needs --follow/],
      [["--timeout", "1"], /--timeout needs --follow/],
      [["--follow", "--count", "x"], /--count must be an integer from 1/],
      [["--follow", "--timeout", "0"], /--timeout must be a positive number of seconds/],
      [["--interval", "0"], /--interval must be a positive number/],
      [["--bogus"], /Unknown option '--bogus'/],
      [["extra"], /xenchan domains: /],
    ] as const
  ) {
    it(`exits 2 for ${args.join(" ")}`, async () => {
      const out = bufferOutput();
      assert.equal(await main(["domains", ...args], out), 2);
      assert.match(out.stderr.join("\n"), message);
    });
  }

  it("exits 2 as a process, with the message on stderr", async () => {
    const r = await runCli(["domains", "--count", "2"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--count needs --follow/);
  });
});

describe("xenchan domains --simulate", () => {
  it("lists the demo domains and says it runs on the simulator", async () => {
    const out = bufferOutput();
    assert.equal(await main(["domains", "--simulate"], out), 0, out.stderr.join("\n"));
    assert.match(out.stdout[0], /on the simulator .*nothing here is real Xen/);
    const rows = out.stdout.slice(3).map((l) => l.trim().split(/\s+/));
    assert.deepEqual(rows, [
      ["0", "Domain-0", "running", "-"],
      ["1", "demo-1", "running", "-"],
      ["2", "demo-2", "running", "-"],
      ["3", "demo-3", "running", "-"],
    ]);
    assert.match(out.stderr.join("\n"), /models no guest memory/);
  });

  it("--follow prints the scripted lifecycle's events exactly, then stops at --count", async () => {
    const out = bufferOutput();
    const code = await main(
      ["domains", "--simulate", "--follow", "--count", "7", "--interval", "0.05"],
      out,
    );
    assert.equal(code, 0, out.stderr.join("\n"));
    assert.deepEqual(eventLines(out.stdout), [
      "domain 1 (demo-1): shutdown (poweroff)",
      "domain 1 (demo-1): death",
      "domain 2 (demo-2): shutdown (reboot)",
      "domain 2 (demo-2): death",
      "domain 4 (demo-2): new, running",
      "domain 3 (demo-3): shutdown (crash)",
      "domain 3 (demo-3): death",
      "domain 5 (demo-4): new, running",
      "domain 5 (demo-4): death",
    ]);
    assert.match(out.stdout.at(-1)!, /^stopped \(count reached\); 7 events$/);
  });

  it("--follow stops on the caller's signal (exit 0) and on --timeout before --count (exit 1)", async () => {
    const controller = new AbortController();
    const out = bufferOutput();
    const run = runDomains(
      domainsOptions({ simulate: true, follow: true, interval: "5" }),
      out,
      { signal: controller.signal, onReady: () => setTimeout(() => controller.abort(), 20) },
    );
    assert.equal(await run, 0);
    assert.match(out.stdout.at(-1)!, /stopped \(interrupted\); 0 events/);
    const timed = bufferOutput();
    const code = await main(
      ["domains", "--simulate", "--follow", "--count", "50", "--timeout", "0.1"],
      timed,
    );
    assert.equal(code, 1);
    assert.match(timed.stdout.at(-1)!, /stopped \(timeout\)/);
  });
});

describe("xenchan domains on real Xen's shape (fakes of libxenctrl and XenStore)", () => {
  function dom0World() {
    const control = new FakeDomainControl(
      fakeDomainInfo(0, { flags: { running: true, blocked: false }, memoryKb: 1048576 }),
      fakeDomainInfo(3, { memoryKb: 524288 }),
      fakeDomainInfo(4, { flags: { paused: true }, memoryKb: 262144 + 1023 }),
      fakeDomainInfo(6, { flags: { shutdown: true }, shutdownReason: 3 }),
      fakeDomainInfo(7, { flags: { dying: true } }),
    );
    const store = fakeXenStore({ 0: "Domain-0", 3: "web", 4: "db", 6: "crashy", 7: "gone" });
    return { control, store, world: realWorld(control, store.xs, 20) };
  }

  it("lists id, name (from /local/domain/<id>/name), state and Mem in MiB, then closes", async () => {
    const { control, store, world } = dom0World();
    const out = bufferOutput();
    assert.equal(await runDomains(domainsOptions({}), out, { world }), 0, out.stderr.join("\n"));
    assert.deepEqual(out.stdout.map((l) => l.trimEnd()), [
      "ID  Name      State             Mem(MiB)",
      "--  --------  ----------------  --------",
      " 0  Domain-0  running               1024",
      " 3  web       blocked                512",
      " 4  db        paused                 256",
      " 6  crashy    shutdown (crash)       256",
      " 7  gone      dying                  256",
    ]);
    assert.equal(control.closes, 1);
    assert.equal(store.closes(), 1);
  });

  it("--follow: SHUTDOWN with its reason and DEATH as @releaseDomain fires; the watch is removed", async () => {
    const { control, store, world } = dom0World();
    const out = bufferOutput();
    const run = runDomains(domainsOptions({ follow: true, count: "3" }), out, {
      world,
      onReady: async () => {
        await settle();
        control.shutdown(3, 1);
        store.watch.fire();
        await settle();
        control.domains.delete(3);
        control.domains.delete(6);
        store.watch.fire();
      },
    });
    assert.equal(await run, 0, out.stderr.join("\n"));
    assert.deepEqual(eventLines(out.stdout), [
      "domain 6 (crashy): shutdown (crash)",
      "domain 3 (web): shutdown (reboot)",
      "domain 3 (web): death",
    ]);
    assert.deepEqual(store.watch.paths, ["@releaseDomain"]);
    await settle();
    assert.equal(store.watch.active, 0);
    assert.equal(control.closes, 1);
  });

  it("without a XenStore client: no names, a note, and --follow polls the domain list", async () => {
    const control = new FakeDomainControl(fakeDomainInfo(0), fakeDomainInfo(2));
    const out = bufferOutput();
    const run = runDomains(domainsOptions({ follow: true, count: "1", interval: "0.01" }), out, {
      world: realWorld(control, null, 10),
      onReady: () => setTimeout(() => control.domains.delete(2), 30),
    });
    assert.equal(await run, 0, out.stderr.join("\n"));
    assert.deepEqual(out.stdout.slice(2, 4).map((l) => l.trim().split(/\s+/)[1]), ["-", "-"]);
    assert.match(out.stderr.join("\n"), /no XenStore client.*polls the domain list/);
    assert.deepEqual(eventLines(out.stdout), ["domain 2 (-): death"]);
  });

  it("off Xen it exits 1, says why and points to --simulate", {
    skip: !offXen && "this machine is a Xen dom0",
  }, async () => {
    const out = bufferOutput();
    assert.equal(await main(["domains"], out), 1);
    const err = out.stderr.join("\n");
    assert.match(err, /cannot read domain information/);
    assert.match(err, /xc_interface_open failed: ENOENT|cannot load libxenctrl/);
    assert.match(err, /xenchan domains --simulate/);
  });
});
