/**
 * The project's own Linux errno table (core/errno.ts): every errno gets its
 * symbolic name from it, so XenCallError.code is the same under Deno, Bun
 * and the simulator, even for numbers a runtime has no name for.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { constants } from "node:os";
import { errnoName, errnoValue, LINUX_ERRNO_ALIASES, LINUX_ERRNO_NAMES } from "../core/errno.ts";
import { callError, XenCallError } from "../core/errors.ts";
import { DisasterError } from "../plugins/osevent/mod.ts";

describe("errno table", () => {
  it("names the errnos runtimes disagree on or do not know", () => {
    assert.equal(errnoName(133), "EHWPOISON");
    assert.equal(errnoName(132), "ERFKILL");
    assert.equal(errnoName(95), "EOPNOTSUPP");
    assert.equal(errnoName(11), "EAGAIN");
    assert.equal(errnoName(35), "EDEADLK");
    assert.equal(new XenCallError("xenevtchn_open", 133).code, "EHWPOISON");
    assert.equal(new XenCallError("xengnttab_grant_copy", 95).code, "EOPNOTSUPP");
    assert.match(new XenCallError("read", 11).message, /^read failed: EAGAIN \(errno 11\)$/);
  });

  it("covers every number from 1 to 133 except the two Linux leaves unassigned", () => {
    const missing: number[] = [];
    for (let n = 1; n <= 133; n++) if (!(n in LINUX_ERRNO_NAMES)) missing.push(n);
    assert.deepEqual(missing, [41, 58]);
    const names = Object.values(LINUX_ERRNO_NAMES);
    assert.equal(new Set(names).size, names.length, "names are unique");
  });

  it("agrees with the runtime's own errno constants wherever both define a name", () => {
    const runtime = constants.errno as Readonly<Record<string, number>>;
    let compared = 0;
    for (const [n, name] of Object.entries(LINUX_ERRNO_NAMES)) {
      if (runtime[name] === undefined) continue;
      assert.equal(runtime[name], Number(n), `${name}`);
      compared++;
    }
    assert.ok(compared >= 70, `only ${compared} names compared`);
  });

  it("maps names (and aliases) back to numbers, round trip", () => {
    for (const [n, name] of Object.entries(LINUX_ERRNO_NAMES)) {
      assert.equal(errnoValue(name), Number(n));
      assert.equal(callError("x", name).code, name);
    }
    for (const [alias, n] of Object.entries(LINUX_ERRNO_ALIASES)) {
      assert.equal(errnoValue(alias), n);
      assert.equal(callError("x", alias).code, errnoName(n), "codes use the primary name");
    }
    assert.throws(() => errnoValue("ENOTANERRNO"), RangeError);
  });

  it("gives E<n> for a number it does not know, never undefined", () => {
    assert.equal(errnoName(41), "E41");
    assert.equal(errnoName(512), "E512");
    assert.equal(errnoName(0), "E0");
    assert.equal(errnoName(1.5), "E1.5");
    assert.equal(new XenCallError("x", 4095).code, "E4095");
    assert.equal(new DisasterError(0, "poll failed", 133).code, "EHWPOISON");
  });
});
