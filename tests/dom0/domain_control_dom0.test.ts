/**
 * libxenctrl domain information in a real dom0 (no guest needed): dom0 is
 * listed with plausible values, a missing domid is undefined (Xen 4.17
 * answers with the next domain: the id is checked), the handle closes once
 * and refuses use afterwards, and `xenchan domains` prints dom0's row.
 * Skipped off Xen; run inside dom0 by `npm run test:xen`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bufferOutput } from "../../cli/io.ts";
import { main } from "../../cli/main.ts";
import { ClosedHandleError, openDomainControl } from "../../mod.ts";
import { whyNoXen } from "../helpers/xen.ts";

const skip = (await whyNoXen()) ?? false;

describe("libxenctrl in dom0", { skip }, () => {
  it("lists dom0 with its memory, vCPUs and flags; info(0) agrees", async () => {
    using control = await openDomainControl();
    const all = control.list();
    const dom0 = all.find((d) => d.domid === 0);
    assert.ok(dom0, `dom0 missing from ${JSON.stringify(all.map((d) => d.domid))}`);
    assert.ok(dom0.memoryKb > 0 && dom0.memoryKb === dom0.totPages * 4);
    assert.ok(dom0.onlineVcpus >= 1);
    assert.equal(dom0.flags.dying, false);
    assert.equal(dom0.flags.shutdown, false);
    assert.equal(dom0.shutdownReason, undefined);
    assert.ok(dom0.cpuTimeNs > 0n);
    assert.match(dom0.handle, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.deepEqual(all.map((d) => d.domid), [...all.map((d) => d.domid)].sort((a, b) => a - b));
    assert.equal(control.info(0)?.handle, dom0.handle);
  });

  it("a domid that does not exist is undefined, even below an existing one", async () => {
    using control = await openDomainControl();
    const ids = new Set(control.list().map((d) => d.domid));
    const missing = [1, 2, 3, 100, 0x7fef].filter((d) => !ids.has(d));
    for (const domid of missing) assert.equal(control.info(domid), undefined, `d${domid}`);
  });

  it("close is idempotent; a closed handle refuses list and info", async () => {
    const control = await openDomainControl();
    control.close();
    control.close();
    assert.equal(control.closed, true);
    assert.throws(() => control.list(), ClosedHandleError);
    assert.throws(() => control.info(0), ClosedHandleError);
  });

  it("xenchan domains prints dom0's row with its memory", async () => {
    const out = bufferOutput();
    assert.equal(await main(["domains"], out), 0, out.stderr.join("\n"));
    const row = out.stdout.find((l) => /^\s*0\s/.test(l));
    assert.ok(row, out.text());
    assert.match(row, /\s(running|blocked|runnable)\s+\d+$/);
  });
});
