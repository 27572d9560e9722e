/**
 * libxenctrl domain information: the xc_domaininfo_t layout and XEN_DOMINF_*
 * constants against gcc's view of /usr/include/xenctrl.h (libxen-dev), the
 * decoder against a struct filled by C, and the handle on this host: the
 * library loads by version, and off Xen opening fails with a typed error.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { requireCToolchain } from "./helpers/toolchain.ts";
import { XenCallError, XenUsageError } from "../core/errors.ts";
import { LIBRARIES } from "../ffi/symbols.ts";
import {
  DomainControl,
  DOMAININFO_LAYOUT,
  DOMINF,
  openDomainControl,
  parseDomainInfo,
} from "../ffi/mod.ts";
import { firstLine, startFixture } from "./helpers/child.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/domaininfo_layout.c", import.meta.url));

let built: { values: Map<string, number>; sample: Uint8Array } | undefined;

/** Builds and runs the fixture once: its "name value" lines and its sample struct. */
function fromC(): { values: Map<string, number>; sample: Uint8Array } {
  if (built) return built;
  requireCToolchain("/usr/include/xenctrl.h", "Xen headers");
  const dir = mkdtempSync(join(tmpdir(), "xenchan-domaininfo-"));
  try {
    const exe = join(dir, "domaininfo_layout");
    // gnu11: xen/hvm/save.h needs anonymous unions
    execFileSync("gcc", ["-std=gnu11", "-Wall", "-Werror", "-o", exe, FIXTURE], { stdio: "pipe" });
    const values = new Map<string, number>();
    for (const line of execFileSync(exe, { encoding: "utf8" }).trim().split("\n")) {
      const [name, value] = line.split(" ");
      values.set(name, Number(value));
    }
    const hex = execFileSync(exe, ["sample"], { encoding: "utf8" }).trim();
    const sample = new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
    built = { values, sample };
    return built;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("xc_domaininfo_t against /usr/include/xenctrl.h (gcc + libxen-dev)", () => {
  it("every offset, the size and every XEN_DOMINF_* constant match", () => {
    const { values } = fromC();
    const expected: Record<string, number> = { ...DOMAININFO_LAYOUT, ...DOMINF };
    for (const [name, value] of Object.entries(expected)) {
      assert.equal(values.get(name), value, name);
    }
    assert.equal(values.get("sizeof_domain"), 2);
    assert.equal(values.get("sizeof_handle"), 16);
    assert.equal(values.size, Object.keys(expected).length + 2, "the fixture prints no more");
  });

  it("parseDomainInfo reads back a struct filled by C", () => {
    const { sample } = fromC();
    assert.equal(sample.byteLength, DOMAININFO_LAYOUT.size);
    const info = parseDomainInfo(sample);
    assert.deepEqual(info, {
      domid: 0x7fe,
      flags: {
        dying: false,
        hvm: true,
        shutdown: true,
        paused: true,
        blocked: false,
        running: false,
        debugged: false,
        xsDomain: false,
        hap: false,
      },
      rawFlags: (1 << 1) | (1 << 2) | (1 << 3) | (3 << 16),
      shutdownReason: 3,
      totPages: 262144,
      maxPages: 262400,
      outstandingPages: 3,
      sharedPages: 5,
      pagedPages: 7,
      memoryKb: 1048576,
      onlineVcpus: 2,
      maxVcpuId: 3,
      cpuTimeNs: 0x123456789abcdefn,
      ssidref: 0x11223344,
      handle: "00112233-4455-6677-8899-aabbccddeeff",
      cpupool: 9,
    });
  });

  it("an entry at an offset of a batch buffer, and no shutdownReason unless shut down", () => {
    const { sample } = fromC();
    const batch = new Uint8Array(DOMAININFO_LAYOUT.size * 3);
    batch.set(sample, DOMAININFO_LAYOUT.size * 2);
    const dv = new DataView(batch.buffer, DOMAININFO_LAYOUT.size * 2);
    dv.setUint32(DOMAININFO_LAYOUT.flags, (1 << DOMINF.dying) | (1 << DOMINF.blocked), true);
    const info = parseDomainInfo(batch, DOMAININFO_LAYOUT.size * 2);
    assert.equal(info.domid, 0x7fe);
    assert.equal(info.flags.dying, true);
    assert.equal(info.flags.blocked, true);
    assert.equal(info.flags.shutdown, false);
    assert.equal("shutdownReason" in info, false);
    assert.equal(parseDomainInfo(batch, 0).handle, "00000000-0000-0000-0000-000000000000");
  });

  it("refuses a buffer too short for one entry, naming the offset", () => {
    assert.throws(
      () => parseDomainInfo(new Uint8Array(200), 100),
      (e: unknown) => e instanceof XenUsageError && /got 100/.test(e.message),
    );
    assert.throws(() => parseDomainInfo(new Uint8Array(111)), XenUsageError);
  });
});

/** How this host answers: the library's path, or why it did not load. */
async function hostOutcome(): Promise<DomainControl | Error> {
  return await openDomainControl().catch((e: Error) => e);
}

describe("libxenctrl on this host", () => {
  it("loads by version, and off Xen xc_interface_open fails with XenCallError ENOENT", async () => {
    const outcome = await hostOutcome();
    if (outcome instanceof DomainControl) {
      // a Xen dom0: the handle works; dom0 is always there
      try {
        const dom0 = outcome.info(0);
        assert.equal(dom0?.domid, 0);
        assert.ok(outcome.list().some((d) => d.domid === 0));
      } finally {
        outcome.close();
        outcome.close();
      }
      return;
    }
    if (outcome.name === "LibraryNotFoundError") {
      assert.match(outcome.message, /libxenctrl\.so\.4\.17/);
      assert.match(outcome.message, /apt-get install libxenmisc4\.17/);
      return;
    }
    assert.ok(outcome instanceof XenCallError, `expected XenCallError, got ${outcome}`);
    assert.equal(outcome.call, "xc_interface_open");
    assert.equal(outcome.code, "ENOENT");
    assert.match(outcome.message, /\/dev\/xen\/privcmd/);
  });

  it("tries every release's soname in order, 4.17 first", () => {
    const names: readonly string[] = LIBRARIES.xenctrl.sonames;
    assert.equal(names[0], "libxenctrl.so.4.17");
    for (const minor of [16, 18, 19, 20, 21]) {
      assert.ok(names.includes(`libxenctrl.so.4.${minor}`), `4.${minor}`);
    }
    assert.equal(names.at(-1), "libxenctrl.so");
  });

  it("a missing library names the path tried, the package and the variable", async () => {
    const child = startFixture("load_missing_library.ts", ["xenctrl"], {
      XENCHAN_LIBXENCTRL: "/nonexistent/libxenctrl.so.4.17",
    });
    const result = JSON.parse(await firstLine(child));
    assert.equal(result.name, "LibraryNotFoundError");
    assert.deepEqual(result.tried, ["/nonexistent/libxenctrl.so.4.17"]);
    assert.equal(result.install, "libxenmisc4.17");
    assert.equal(result.envVar, "XENCHAN_LIBXENCTRL");
    assert.match(result.message, /apt-get install libxenmisc4\.17/);
  });
});
