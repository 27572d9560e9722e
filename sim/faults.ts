/**
 * Fault injection switches for tests. The hypervisor owns one `SimFaults`
 * (hv.faults); the simulated kernel paths consult it. Crash faults (process
 * and domain crashes) and paging are methods of the process
 * (`SimDomainBackend.crash`) and the hypervisor (`crashDomain`, `pageOut`,
 * `pageIn`), because they act on live objects.
 *
 * @module
 */
import { XenUsageError } from "../core/errors.ts";
import { checkDomid, checkOptions, checkString, describe } from "../core/validate.ts";

/** Which allocations `failNextAllocation` makes fail. */
export interface AllocationFault {
  /** Only allocations in this domain (default: any domain). */
  readonly domid?: number;
  /** Only this C library call, e.g. "xengnttab_map_grant_refs" (default: any). */
  readonly call?: string;
  /** How many matching allocations fail (default 1). */
  readonly count?: number;
}

/** The fault switches. */
export class SimFaults {
  #alloc: { domid?: number; call?: string; left: number }[] = [];

  /**
   * Models the old Linux bug (xenevtchn.h, Linux 3.12): `pending()` blocks
   * even on a non-blocking fd. When true, `pending()` on a handle with
   * nothing pending throws a XenUsageError whose message starts with
   * "pending() would block", so tests can prove the library never calls it
   * without a readiness signal. When false (default) it fails with EAGAIN, as
   * current Linux does for an O_NONBLOCK fd.
   */
  pendingWouldBlock = false;

  /**
   * Makes the next matching kernel allocation fail with ENOMEM (handle open,
   * port bind, grant map, grant share, grant copy batch). Faults queue up and
   * are consumed in order. Bad arguments throw XenUsageError.
   */
  failNextAllocation(fault?: AllocationFault): void {
    fault = checkOptions("fault", fault);
    const left = fault.count ?? 1;
    if (!(Number.isInteger(left) && left >= 1)) {
      throw new XenUsageError(`count must be a positive integer, got ${describe(fault.count)}`);
    }
    if (fault.domid !== undefined) checkDomid(fault.domid, "fault.domid");
    if (fault.call !== undefined) checkString("fault.call", fault.call);
    this.#alloc.push({ domid: fault.domid, call: fault.call, left });
  }

  /** Number of allocation faults still armed. */
  get armedAllocationFaults(): number {
    return this.#alloc.reduce((n, f) => n + f.left, 0);
  }

  /** Clears every armed allocation fault and resets the switches. */
  reset(): void {
    this.#alloc = [];
    this.pendingWouldBlock = false;
  }

  /**
   * For the simulator's kernel paths: true (and one fault consumed) when an
   * allocation for `call` in `domid` must fail now.
   */
  consumeAllocation(domid: number, call: string): boolean {
    const i = this.#alloc.findIndex((f) =>
      (f.domid === undefined || f.domid === domid) && (f.call === undefined || f.call === call)
    );
    if (i < 0) return false;
    if (--this.#alloc[i].left === 0) this.#alloc.splice(i, 1);
    return true;
  }
}
