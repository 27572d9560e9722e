/**
 * xenchan/testing: a fixture for your own tests. Each test gets its own
 * simulated hypervisor (dom0 plus named guests, their XenStore, fault
 * injection and the virtual clock) and fails when anything is still open,
 * bound, mapped or shared at its end, or a XenStore connection (with its
 * watches and transactions) is still open. Needs no permissions; works
 * unchanged under `deno test` and `bun test` (node:test) and any runner
 * that awaits a promise.
 *
 * ```ts
 * import { withXenSim } from "./mod.ts"; // xenchan/testing
 *
 * // The body of a test, e.g. test("a port bound and closed", () => withXenSim(...)):
 * await withXenSim((sim) => {
 *   const guest = sim.createGuest({ name: "front" });
 *   using evt = sim.dom0.openEventChannels();
 *   evt.bindUnboundPort(guest.domid);
 * }); // rejects with LeakError had `evt` been opened without `using`
 * ```
 *
 * @module
 */
export {
  type GuestOptions,
  withXenSim,
  XenSim,
  XenSimDomain,
  type XenSimOptions,
} from "./fixture.ts";
export { LeakError, type SimLeak, type SimLeakKind } from "./leaks.ts";
