/**
 * `xenchan domains --source libxl|xenstore`: the option, and the libxl world
 * (rows from libxl_list_domain and libxl_domid_to_name) over a stub of the
 * libxl source, printed by the real command. The real thing runs in
 * tests/dom0/libxl_dom0.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { domainsOptions, libxlDomainState, libxlWorld, runDomains } from "../cli/domains.ts";
import { UsageError } from "../cli/args.ts";
import { bufferOutput } from "../cli/io.ts";
import type { LibxlContext, LibxlDomainInfo } from "../ffi/mod.ts";
import type { LibxlDomainSource } from "../plugins/osevent/mod.ts";

function info(domid: number, extra: Partial<LibxlDomainInfo> = {}): LibxlDomainInfo {
  return {
    domid,
    uuid: "00000000-0000-0000-0000-000000000000",
    running: false,
    blocked: true,
    paused: false,
    shutdown: false,
    dying: false,
    currentMemkb: 2097152n,
    maxMemkb: 2097152n,
    cpuTimeNs: 0n,
    onlineVcpus: 1,
    cpupool: 0,
    type: "pv",
    ...extra,
  };
}

describe("xenchan domains --source", () => {
  it("defaults to xenstore, accepts libxl, refuses anything else and --simulate with it", () => {
    assert.equal(domainsOptions({}).source, "xenstore");
    assert.equal(domainsOptions({ source: "libxl" }).source, "libxl");
    assert.throws(
      () => domainsOptions({ source: "xl" }),
      (e: unknown) =>
        e instanceof UsageError && /--source must be xenstore or libxl, got 'xl'/.test(e.message),
    );
    assert.throws(() => domainsOptions({ source: "libxl", simulate: true }), UsageError);
  });

  it("the libxl world lists libxl's domains with names, states and memory, and closes the source", async () => {
    let closed = 0;
    const libxl = {
      libraryPath: "libxenlight.so.4.17",
      listDomains: () => [
        info(0, { running: true }),
        info(3, { shutdown: true, shutdownReason: 3, currentMemkb: 131072n }),
      ],
      domainName: (domid: number) => (domid === 0 ? "Domain-0" : undefined),
    };
    const source = {
      libxl,
      close: () => {
        closed++;
        return Promise.resolve();
      },
    } as unknown as LibxlDomainSource<LibxlContext>;
    const out = bufferOutput();
    const world = libxlWorld(source);
    assert.match(world.description, /through libxl \(libxenlight\.so\.4\.17/);
    const status = await runDomains(
      { follow: false, simulate: false, source: "libxl", intervalMs: 1000 },
      out,
      { world },
    );
    assert.equal(status, 0);
    const text = out.stdout.join("\n");
    assert.match(text, /^\s*0\s+Domain-0\s+running\s+2048\s*$/m);
    assert.match(text, /^\s*3\s+-\s+shutdown \(crash\)\s+128\s*$/m);
    assert.equal(closed, 1);
  });

  it("libxlDomainState names each state", () => {
    assert.equal(libxlDomainState(info(1, { dying: true })), "dying");
    assert.equal(
      libxlDomainState(info(1, { shutdown: true, shutdownReason: 1 })),
      "shutdown (reboot)",
    );
    assert.equal(libxlDomainState(info(1, { paused: true })), "paused");
    assert.equal(libxlDomainState(info(1, { running: true })), "running");
    assert.equal(libxlDomainState(info(1)), "blocked");
    assert.equal(libxlDomainState(info(1, { blocked: false })), "runnable");
  });
});
