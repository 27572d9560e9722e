/**
 * Real-Xen-only tests (dom0 loopback): what needs a real kernel and a second
 * process. Skipped off Xen; run inside dom0 by `npm run test:xen`.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { openEventChannels, openGrantShare, openGrantTable } from "../../mod.ts";
import { exited, firstLine, startFixture } from "../helpers/child.ts";
import { deadline, whyNoXen } from "../helpers/xen.ts";

const skip = (await whyNoXen()) ?? false;
const ffi = { backend: "ffi" } as const;

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

function xenMappings(): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) =>
    /\/dev\/xen\/gnt(dev|alloc)/.test(l)
  ).length;
}

describe("real Xen dom0", () => {
  it("unmap notification fires when the mapping process is killed", { skip }, async () => {
    using shr = await openGrantShare(ffi);
    using events = await openEventChannels(ffi);
    const port = events.bindUnboundPort(0);
    const share = shr.sharePages(0, 1);
    const offset = 40;
    share.bytes[offset] = 1;
    const child = startFixture("map_notify_child.ts", [
      String(share.refs[0]),
      String(offset),
      String(port),
    ]);
    try {
      assert.equal(await firstLine(child), "mapped");
      assert.equal(share.bytes[offset + 1], 0x5a, "the child wrote through its mapping");
      assert.equal(share.bytes[offset], 1);
      child.kill("SIGKILL");
      assert.equal((await exited(child)).signal, "SIGKILL");
      assert.equal(await events.pending({ signal: deadline() }), port);
      assert.equal(share.bytes[offset], 0, "the kernel cleared the status byte");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("handles and mappings leave no file descriptor or mapping behind", { skip }, async () => {
    const fdsBefore = openFds();
    const mapsBefore = xenMappings();
    for (let round = 0; round < 3; round++) {
      const events = await openEventChannels(ffi);
      const shr = await openGrantShare(ffi);
      const gnt = await openGrantTable(ffi);
      const share = shr.sharePages(0, 4);
      gnt.mapDomainGrantRefs(0, share.refs);
      gnt.mapGrantRef(0, share.refs[0]);
      events.bindUnboundPort(0);
      assert.ok(xenMappings() > mapsBefore);
      events.close();
      gnt.close();
      shr.close();
    }
    assert.equal(openFds(), fdsBefore);
    assert.equal(xenMappings(), mapsBefore);
  });

  it("a failed map or share leaves nothing behind and prints nothing", { skip }, async () => {
    using gnt = await openGrantTable(ffi);
    using shr = await openGrantShare(ffi);
    const mapsBefore = xenMappings();
    assert.throws(() => gnt.mapGrantRef(0, 0xffff0), { name: "XenCallError" });
    assert.throws(() => shr.sharePages(0, 0), { name: "XenCallError" });
    assert.equal(xenMappings(), mapsBefore);
  });
});
