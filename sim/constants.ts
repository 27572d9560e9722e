/**
 * Numbers of the Xen and Linux interfaces the simulator models, each with the
 * header or source file it comes from. Plain constants; nothing here
 * allocates or throws.
 *
 * @module
 */

/** First reserved domid; DOMID_SELF equals it (xen/include/public/xen.h). */
export const DOMID_FIRST_RESERVED = 0x7ff0;
/** "The calling domain" in hypercall arguments (xen/include/public/xen.h). */
export const DOMID_SELF = 0x7ff0;
/** Largest value a domid_t (uint16_t) can hold. */
export const DOMID_MAX = 0xffff;

/** Number of VIRQs per vCPU (NR_VIRQS, xen/include/public/xen.h). */
export const NR_VIRQS = 24;

/** VIRQ numbers (xen/include/public/xen.h). */
export const VIRQ = {
  TIMER: 0,
  DEBUG: 1,
  CONSOLE: 2,
  DOM_EXC: 3,
  TBUF: 4,
  DEBUGGER: 6,
  XENOPROF: 7,
  CON_RING: 8,
  PCPU_STATE: 9,
  MEM_EVENT: 10,
  ARGO: 11,
  ENOMEM: 12,
  XENPMU: 13,
} as const;

/** Grant operation status codes (GNTST_*, xen/include/public/grant_table.h). */
export const GNTST = {
  okay: 0,
  general_error: -1,
  bad_domain: -2,
  bad_gntref: -3,
  bad_handle: -4,
  bad_virt_addr: -5,
  bad_dev_addr: -6,
  no_device_space: -7,
  permission_denied: -8,
  bad_page: -9,
  bad_copy_arg: -10,
  address_too_big: -11,
  eagain: -12,
  no_space: -13,
} as const;

/** grant_entry_v1.flags: the grantee may map/copy (xen/include/public/grant_table.h). */
export const GTF_permit_access = 1;
/** grant_entry_v1.flags: the grantee may only read. */
export const GTF_readonly = 1 << 2;
/** grant_entry_v1.flags: set by Xen while the grant is pinned (mapped or copied from). */
export const GTF_reading = 1 << 3;
/** grant_entry_v1.flags: set by Xen while the grant is pinned writable. */
export const GTF_writing = 1 << 4;

/** v1 grant entries per 4096-byte grant-table frame (8 bytes each). */
export const GREFS_PER_FRAME = 512;
/** Refs 0..7 are reserved for the toolstack (GNTTAB_NR_RESERVED_ENTRIES, Linux/Xen). */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
/** The reserved ref of the console ring page (GNTTAB_RESERVED_CONSOLE, xen/grant_table.h). */
export const GNTTAB_RESERVED_CONSOLE = 0;
/** The reserved ref of the XenStore ring page (GNTTAB_RESERVED_XENSTORE, xen/grant_table.h). */
export const GNTTAB_RESERVED_XENSTORE = 1;
/** Xen's default max_grant_frames (gnttab_max_frames=64, Xen 4.17). */
export const DEFAULT_MAX_GRANT_FRAMES = 64;
/** Xen's default max_maptrack_frames (gnttab_max_maptrack_frames=1024). */
export const DEFAULT_MAX_MAPTRACK_FRAMES = 1024;
/** struct grant_mapping is 8 bytes: 512 maptrack entries per frame. */
export const MAPTRACK_PER_FRAME = 512;

/** drivers/xen/gntdev.c `limit`: most grants in one mapping request. */
export const GNTDEV_MAP_LIMIT = 64 * 1024;
/** drivers/xen/gntalloc.c `limit`: most grants gntalloc may hold at once (per kernel). */
export const GNTALLOC_DEFAULT_LIMIT = 1024;

/** Ports addressable by the FIFO ABI (EVTCHN_FIFO_NR_CHANNELS = 1 << 17). */
export const EVTCHN_FIFO_NR_CHANNELS = 1 << 17;
/** xl.cfg(5) default max_event_channels for a guest (ports 1..1023). */
export const DEFAULT_GUEST_MAX_EVTCHN_PORT = 1023;

/** drivers/xen/grant-table.c MAX_DELAY: gnttab_retry_eagain_gop sleeps 1..255 ms. */
export const PAGING_MAX_DELAY = 256;

/** Linux's /dev/xen/evtchn ring starts at 64 slots (evtchn_resize_ring). */
export const EVTCHN_RING_INITIAL = 64;

/** SHUTDOWN_* reasons (xen/include/public/sched.h). */
export const SHUTDOWN_REASONS = {
  poweroff: 0,
  reboot: 1,
  suspend: 2,
  crash: 3,
  watchdog: 4,
  soft_reset: 5,
} as const;

/** A domain shutdown reason by name. */
export type ShutdownReason = keyof typeof SHUTDOWN_REASONS;

/** Returns the SHUTDOWN_* name for a code, or undefined. Throws nothing. */
export function shutdownReasonName(code: number): ShutdownReason | undefined {
  for (const [name, value] of Object.entries(SHUTDOWN_REASONS)) {
    if (value === code) return name as ShutdownReason;
  }
  return undefined;
}

/** One page (XEN_PAGE_SIZE). */
export const PAGE = 4096;
