/**
 * The kernel's retry of grant operations on paged-out frames, modelled on
 * Linux drivers/xen/grant-table.c gnttab_retry_eagain_gop():
 *
 *   do { op(); if (status == GNTST_eagain) msleep(delay++); }
 *   while (status == GNTST_eagain && delay < MAX_DELAY);
 *   if (delay >= MAX_DELAY) status = GNTST_bad_page;
 *
 * gnttab_map_refs and gnttab_batch_copy call it for every op that returned
 * GNTST_eagain, so with MAX_DELAY 256 a map or copy waits up to 32 640 ms
 * (1 + 2 + ... + 255) for the pager and then fails (gntdev turns the
 * GNTST_bad_page into EINVAL). The wait is uninterruptible (msleep), so it
 * cannot be cancelled; the bound is `maxDelay`. On the simulator's virtual
 * clock the sleeps advance time, firing timers (for example a scheduled
 * page-in) as they fall due.
 *
 * libxengnttab's own "retry mmap on EAGAIN forever with usleep(1000)" loop
 * (tools/libs/gnttab/linux.c) is not reached on current Linux: gntdev's mmap
 * reports EINVAL, never EAGAIN, after the kernel's bounded retry above.
 *
 * @module
 */
import { XenUsageError } from "../core/errors.ts";
import type { VirtualClock } from "./clock.ts";
import { GNTST } from "./constants.ts";

/**
 * Runs `op` (which returns a GNTST status) and retries it on GNTST_eagain
 * with sleeps of 1, 2, ... ms of virtual time until `maxDelay`. Returns the
 * final status (GNTST_bad_page when the frame never came back). Throws
 * XenUsageError when a retry is needed while the clock is already running
 * timers (a blocking call made from a timer callback).
 */
export function retryEagain(clock: VirtualClock, maxDelay: number, op: () => number): number {
  let delay = 1;
  let status: number;
  do {
    status = op();
    if (status === GNTST.eagain) {
      if (clock.advancing) {
        throw new XenUsageError(
          "a grant operation blocked on a paged-out frame inside a timer callback",
        );
      }
      clock.advance(delay++);
    }
  } while (status === GNTST.eagain && delay < maxDelay);
  return delay >= maxDelay ? GNTST.bad_page : status;
}

/** Returns the GNTST_* name of a status code, e.g. -1 -> "GNTST_general_error". */
export function gntstName(status: number): string {
  for (const [name, value] of Object.entries(GNTST)) {
    if (value === status) return `GNTST_${name}`;
  }
  return `GNTST(${String(status)})`;
}
