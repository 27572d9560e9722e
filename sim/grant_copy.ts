/**
 * xengnttab_grant_copy as Linux's gntdev (IOCTL_GNTDEV_GRANT_COPY:
 * gntdev_grant_copy_seg, batches of GNTDEV_COPY_BATCH = 16 ops) and Xen's
 * GNTTABOP_copy (gnttab_copy_lock_domains, acquire_grant_for_copy) do it.
 *
 * Whole-call errors (EINVAL): a local -> local segment, or a grant side whose
 * offset + len crosses the page (Linux refuses before Xen could answer
 * GNTST_bad_copy_arg). Ops already sent to Xen in earlier batches of 16 have
 * been performed; the current batch is dropped, as in gntdev.
 * Per-segment statuses: GNTST_okay, bad_domain (no such domain), bad_gntref
 * (ref beyond the granter's table), general_error (ref not granted to the
 * caller, or a read-only grant as destination), bad_page (frame stayed paged
 * out through the kernel's retry). GNTST_permission_denied only comes from an
 * XSM policy, which the simulator does not model.
 *
 * @module
 */
import type { GrantCopyPointer, GrantCopySegment } from "../core/driver.ts";
import { XenUsageError } from "../core/errors.ts";
import { DOMID_SELF, GNTST, PAGE } from "./constants.ts";
import type { SimContext } from "./context.ts";
import type { SimDomain } from "./domain.ts";
import { checkDomid, checkU32, fail } from "./errno.ts";
import { retryEagain } from "./paging.ts";
import type { GrantEntry } from "./xen_gnttab.ts";

const COPY_BATCH = 16;

interface Claim {
  view: Uint8Array;
  release(): void;
}

/**
 * Performs `segments` for a process of `domain`. Returns one GNTST status per
 * segment. Throws SimErrno EINVAL / ENOMEM (fault, `call`), or XenUsageError
 * for values that do not fit the C structure.
 */
export function grantCopy(
  ctx: SimContext,
  domain: SimDomain,
  segments: readonly GrantCopySegment[],
  call: string,
): number[] {
  if (!Array.isArray(segments)) throw new XenUsageError("segments must be an array");
  segments.forEach(checkSegment);
  if (ctx.faults.consumeAllocation(domain.domid, call)) fail("ENOMEM", "copy batch (injected)");
  const statuses: number[] = segments.map(() => GNTST.okay);
  let batch: number[] = [];
  const flush = () => {
    for (const i of batch) statuses[i] = copyOne(ctx, domain, segments[i]);
    batch = [];
  };
  segments.forEach((seg, i) => {
    if ("local" in seg.source && "local" in seg.dest) {
      fail("EINVAL", `segment ${i}: local to local`);
    }
    for (const side of [seg.source, seg.dest]) {
      if ("ref" in side && side.offset + seg.len > PAGE) {
        fail("EINVAL", `segment ${i}: offset ${side.offset} + len ${seg.len} crosses the page`);
      }
    }
    if (batch.length >= COPY_BATCH) flush();
    batch.push(i);
  });
  flush();
  return statuses;
}

function checkSegment(seg: GrantCopySegment, i: number): void {
  if (!(Number.isInteger(seg?.len) && seg.len >= 0 && seg.len <= 0xffff)) {
    throw new XenUsageError(`segment ${i}: len must be an integer in 0..65535`);
  }
  for (const side of [seg.source, seg.dest]) {
    if (side && "local" in side) {
      if (!(side.local instanceof Uint8Array) || side.local.length < seg.len) {
        throw new XenUsageError(`segment ${i}: local must be a Uint8Array of at least len bytes`);
      }
    } else if (side && "ref" in side) {
      checkU32(side.ref, `segment ${i} ref`);
      checkDomid(side.domid, `segment ${i} domid`);
      if (!(Number.isInteger(side.offset) && side.offset >= 0 && side.offset <= 0xffff)) {
        throw new XenUsageError(`segment ${i}: offset must be an integer in 0..65535`);
      }
    } else {
      throw new XenUsageError(`segment ${i}: each side needs { ref, domid, offset } or { local }`);
    }
  }
}

/** One GNTTABOP_copy op, with the kernel's eagain retry. Returns its GNTST status. */
function copyOne(ctx: SimContext, domain: SimDomain, seg: GrantCopySegment): number {
  return retryEagain(ctx.clock, ctx.pagingMaxDelay, () => {
    const srcDom = lockDomain(ctx, domain, seg.source);
    const dstDom = lockDomain(ctx, domain, seg.dest);
    if (!srcDom || !dstDom) return GNTST.bad_domain;
    const src = claim(srcDom, domain.domid, seg.source, true);
    if (typeof src === "number") return src;
    const dst = claim(dstDom, domain.domid, seg.dest, false);
    if (typeof dst === "number") {
      src.release();
      return dst;
    }
    dst.view.set(src.view.subarray(0, seg.len));
    src.release();
    dst.release();
    return GNTST.okay;
  });
}

/** gnttab_copy_lock_domain: the domain behind a grant pointer (DOMID_SELF = caller). */
function lockDomain(ctx: SimContext, self: SimDomain, p: GrantCopyPointer): SimDomain | undefined {
  if ("local" in p || p.domid === DOMID_SELF) return self;
  return ctx.domain(p.domid);
}

/** gnttab_copy_claim_buf: pins the grant (or takes the local buffer); a view at the offset. */
function claim(
  d: SimDomain,
  caller: number,
  p: GrantCopyPointer,
  readonly: boolean,
): Claim | number {
  if ("local" in p) return { view: p.local, release: () => {} };
  const got = d.grants.acquire(p.ref, caller, readonly);
  if (typeof got === "number") return got;
  const entry: GrantEntry = got;
  const view = entry.frame.view().subarray(p.offset);
  return { view, release: () => d.grants.release(entry, readonly) };
}
