/**
 * The lifetime backstop on real Xen (dom0 loopback): an event channel
 * handle, a grant mapping and a share dropped without close() are released
 * when garbage-collected (their fd and mappings leave /proc/self) and
 * reported. Skipped off Xen; run inside dom0 by `npm run test:xen`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runBackstop } from "../helpers/child.ts";
import { whyNoXen } from "../helpers/xen.ts";

const skip = (await whyNoXen()) ?? false;

interface Side {
  fds: number;
  maps: number;
  gnt?: { ranges: number; pages: number };
  shr?: { ranges: number; pages: number };
}

describe("real Xen dom0: the garbage-collection backstop", () => {
  it("releases and reports a dropped handle, mapping and share", { skip }, async () => {
    const run = await runBackstop<{ ports: number[]; start: Side; before: Side; after: Side }>(
      "ffi",
    );
    const { ports, start, before, after } = run.facts;
    const byKind = new Map(run.reports.map((r) => [r.kind, r]));
    assert.equal(run.reports.length, 3, JSON.stringify(run.reports));
    assert.deepEqual(byKind.get("EventChannels")?.ports, [...ports].sort((a, b) => a - b));
    assert.equal(byKind.get("GrantMapping")?.pages, 1);
    assert.equal(byKind.get("SharedGrant")?.pages, 2);
    for (const r of run.reports) {
      assert.equal(r.backend, "ffi");
      assert.equal(r.failed, false, r.message);
    }
    assert.ok(before.fds > start.fds, "the event channel handle held an fd");
    assert.ok(before.maps > start.maps, "the mapping and the share were in /proc/self/maps");
    assert.equal(after.fds, start.fds, "the backstop closed the event channel fd");
    assert.equal(after.maps, start.maps, "the backstop unmapped and unshared");
    assert.deepEqual(after.gnt, { ranges: 0, pages: 0 });
    assert.deepEqual(after.shr, { ranges: 1, pages: 1 }, "the share kept alive is still held");
  });
});
