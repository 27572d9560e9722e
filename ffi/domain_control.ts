/**
 * Domain information from libxenctrl (xc_domain_getinfolist): what `xl list`
 * shows, and what libxl reads on each @releaseDomain to tell a shutdown from
 * a death (tools/libs/light/libxl_domain.c, domain_death_xswatch_callback).
 *
 * xc_domaininfo_t is xen_domctl_getdomaininfo_t (xen/include/public/domctl.h),
 * 112 bytes on x86_64, identical from Xen 4.16 to 4.21; DOMAININFO_LAYOUT
 * holds its offsets and tests/domain_control.test.ts compares them with gcc's
 * view of /usr/include/xenctrl.h.
 *
 * @module
 */
import { ClosedHandleError, XenCallError, XenUsageError } from "../core/errors.ts";
import { checkDomid } from "../core/validate.ts";
import { loadXenCtrl, type XenCtrlLibrary } from "./load.ts";
import type { Ptr } from "./types.ts";

/** Byte offsets of xc_domaininfo_t on x86_64 (the `size` is its sizeof). */
export const DOMAININFO_LAYOUT = Object.freeze({
  size: 112,
  domain: 0, // domid_t
  flags: 4, // uint32_t XEN_DOMINF_*
  totPages: 8, // uint64_aligned_t
  maxPages: 16,
  outstandingPages: 24,
  shrPages: 32,
  pagedPages: 40,
  sharedInfoFrame: 48,
  cpuTime: 56, // ns
  nrOnlineVcpus: 64, // uint32_t
  maxVcpuId: 68,
  ssidref: 72,
  handle: 76, // xen_domain_handle_t: uint8_t[16]
  cpupool: 92, // uint32_t
  gpaddrBits: 96, // uint8_t
});

/** XEN_DOMINF_* (xen/include/public/domctl.h): bit numbers, and the shutdown code field. */
export const DOMINF = Object.freeze({
  dying: 0,
  hvmGuest: 1,
  shutdown: 2,
  paused: 3,
  blocked: 4,
  running: 5,
  debugged: 6,
  xsDomain: 7,
  hap: 8,
  shutdownShift: 16,
  shutdownMask: 0xff,
});

/** The XEN_DOMINF_* flags of a domain, decoded. */
export interface DomainFlags {
  /** Being destroyed (domain_kill ran): as good as dead. */
  readonly dying: boolean;
  /** An HVM (or PVH) guest, not PV. */
  readonly hvm: boolean;
  /** Shut down (SCHEDOP_shutdown or a crash), not yet destroyed. */
  readonly shutdown: boolean;
  readonly paused: boolean;
  /** Every vCPU is blocked (waiting for an event). */
  readonly blocked: boolean;
  /** A vCPU is running on a physical CPU right now. */
  readonly running: boolean;
  readonly debugged: boolean;
  /** The domain is a xenstore stub domain. */
  readonly xsDomain: boolean;
  /** Hardware-assisted paging is in use. */
  readonly hap: boolean;
}

/**
 * One domain as xc_domain_getinfolist reports it. Page counts are numbers
 * (a count of 4 KiB pages stays exact below 2^53, i.e. 32 EiB); cpuTimeNs is
 * a bigint (nanoseconds pass 2^53 after 104 days of vCPU time).
 */
export interface DomainInfo {
  readonly domid: number;
  readonly flags: DomainFlags;
  /** The raw XEN_DOMINF_* word. */
  readonly rawFlags: number;
  /** SHUTDOWN_* code ((flags >> 16) & 0xff) when flags.shutdown, else undefined. */
  readonly shutdownReason?: number;
  /** Pages the domain holds now. */
  readonly totPages: number;
  /** Its page limit. */
  readonly maxPages: number;
  readonly outstandingPages: number;
  readonly sharedPages: number;
  readonly pagedPages: number;
  /** totPages * 4 (KiB), as `xl list` computes Mem. */
  readonly memoryKb: number;
  readonly onlineVcpus: number;
  readonly maxVcpuId: number;
  /** Total vCPU time in nanoseconds. */
  readonly cpuTimeNs: bigint;
  readonly ssidref: number;
  /** The domain handle as a UUID string (lower-case, 8-4-4-4-12). */
  readonly handle: string;
  readonly cpupool: number;
}

/** Formats the 16 handle bytes as a UUID string, as libxl's LIBXL_UUID_FMT does. */
function uuidString(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20, 32)
  }`;
}

function safeNumber(value: bigint): number {
  return Number(value); // exact below 2^53; see DomainInfo
}

/**
 * Decodes the xc_domaininfo_t at `offset` of `bytes` (little-endian, the
 * x86_64 layout). Throws XenUsageError when fewer than 112 bytes remain.
 * Pure: reads nothing else.
 */
export function parseDomainInfo(bytes: Uint8Array, offset = 0): DomainInfo {
  const L = DOMAININFO_LAYOUT;
  if (!Number.isInteger(offset) || offset < 0 || offset + L.size > bytes.byteLength) {
    throw new XenUsageError(
      `offset must leave ${L.size} bytes of a ${bytes.byteLength}-byte buffer, got ${offset}`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, L.size);
  const raw = dv.getUint32(L.flags, true);
  const bit = (n: number) => ((raw >>> n) & 1) === 1;
  const flags: DomainFlags = {
    dying: bit(DOMINF.dying),
    hvm: bit(DOMINF.hvmGuest),
    shutdown: bit(DOMINF.shutdown),
    paused: bit(DOMINF.paused),
    blocked: bit(DOMINF.blocked),
    running: bit(DOMINF.running),
    debugged: bit(DOMINF.debugged),
    xsDomain: bit(DOMINF.xsDomain),
    hap: bit(DOMINF.hap),
  };
  const totPages = safeNumber(dv.getBigUint64(L.totPages, true));
  const info: DomainInfo = {
    domid: dv.getUint16(L.domain, true),
    flags,
    rawFlags: raw,
    totPages,
    maxPages: safeNumber(dv.getBigUint64(L.maxPages, true)),
    outstandingPages: safeNumber(dv.getBigUint64(L.outstandingPages, true)),
    sharedPages: safeNumber(dv.getBigUint64(L.shrPages, true)),
    pagedPages: safeNumber(dv.getBigUint64(L.pagedPages, true)),
    memoryKb: totPages * 4,
    onlineVcpus: dv.getUint32(L.nrOnlineVcpus, true),
    maxVcpuId: dv.getUint32(L.maxVcpuId, true),
    cpuTimeNs: dv.getBigUint64(L.cpuTime, true),
    ssidref: dv.getUint32(L.ssidref, true),
    handle: uuidString(bytes.subarray(offset + L.handle, offset + L.handle + 16)),
    cpupool: dv.getUint32(L.cpupool, true),
  };
  if (!flags.shutdown) return info;
  return { ...info, shutdownReason: (raw >>> DOMINF.shutdownShift) & DOMINF.shutdownMask };
}

/** Domains asked for per xc_domain_getinfolist call. */
const BATCH = 64;
/** DOMID_FIRST_RESERVED: domids at or above it are not domains. */
const DOMID_FIRST_RESERVED = 0x7ff0;

/**
 * An open libxenctrl handle (xc_interface) for reading domain information.
 * Needs a privileged dom0 (/dev/xen/privcmd). Not shared between threads;
 * every method is synchronous (one hypercall per 64 domains). The caller
 * owns it: close() or `using`. There is no finalizer backstop: a handle
 * that is never closed keeps its fds until the process exits.
 */
export class DomainControl implements Disposable {
  readonly #libs: XenCtrlLibrary;
  readonly #buffer = new Uint8Array(DOMAININFO_LAYOUT.size * BATCH);
  #xch: Ptr | null;

  /**
   * Opens the handle (xc_interface_open with the quiet logger). Throws
   * XenCallError("xc_interface_open"): ENOENT without /dev/xen/privcmd (not a
   * Xen dom0, or xen-privcmd not loaded), EACCES/EPERM when not root.
   */
  constructor(libs: XenCtrlLibrary) {
    this.#libs = libs;
    const xch = libs.xenctrl.symbols.xc_interface_open(libs.logger, libs.logger, 0);
    if (xch === null) {
      const errno = libs.errno() || 5; // EIO when the library left errno unset
      throw new XenCallError("xc_interface_open", errno, openHint(errno));
    }
    this.#xch = xch;
  }

  /** The library file this handle came from (for messages). */
  get libraryPath(): string {
    return this.#libs.xenctrl.path;
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#xch === null;
  }

  #live(): Ptr {
    if (this.#xch === null) throw new ClosedHandleError("domain control handle");
    return this.#xch;
  }

  /** One xc_domain_getinfolist call from `first`; returns how many entries it wrote. */
  #fetch(first: number, max: number): number {
    const n = this.#libs.xenctrl.symbols.xc_domain_getinfolist(
      this.#live(),
      first,
      max,
      this.#buffer,
    );
    if (n < 0) throw new XenCallError("xc_domain_getinfolist", this.#libs.errno() || 5);
    return Math.min(n, max);
  }

  /**
   * Every domain, ascending by domid (dying ones included, flagged). Throws
   * ClosedHandleError after close(), XenCallError("xc_domain_getinfolist")
   * with errno when the hypercall fails (nothing is returned then).
   */
  list(): DomainInfo[] {
    const found: DomainInfo[] = [];
    let first = 0;
    while (first < DOMID_FIRST_RESERVED) {
      const n = this.#fetch(first, BATCH);
      for (let i = 0; i < n; i++) {
        found.push(parseDomainInfo(this.#buffer, i * DOMAININFO_LAYOUT.size));
      }
      if (n < BATCH) break;
      first = found[found.length - 1].domid + 1;
    }
    return found;
  }

  /**
   * The domain `domid`, or undefined when it does not exist. The hypercall
   * answers with the first domain at or above `domid` (Xen 4.17), so the
   * returned id is checked. Throws XenUsageError for a domid outside
   * 0..65535, ClosedHandleError after close(), XenCallError on failure
   * (ESRCH, which Xen 4.18+ may give for a missing domain, means undefined).
   */
  info(domid: number): DomainInfo | undefined {
    checkDomid(domid);
    let n: number;
    try {
      n = this.#fetch(domid, 1);
    } catch (error) {
      if (error instanceof XenCallError && error.code === "ESRCH") return undefined;
      throw error;
    }
    if (n < 1) return undefined;
    const info = parseDomainInfo(this.#buffer, 0);
    return info.domid === domid ? info : undefined;
  }

  /** Closes the handle (xc_interface_close). Idempotent; throws nothing. */
  close(): void {
    const xch = this.#xch;
    if (xch === null) return;
    this.#xch = null;
    this.#libs.xenctrl.symbols.xc_interface_close(xch);
  }

  /** Calls close() (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

function openHint(errno: number): string | undefined {
  if (errno === 2) {
    return "no /dev/xen/privcmd: not a Xen dom0, or the xen-privcmd module is not loaded";
  }
  if (errno === 13 || errno === 1) return "domain information needs root in dom0";
  return undefined;
}

/**
 * Loads libxenctrl and opens a DomainControl handle. Rejects with
 * LibraryNotFoundError when no libxenctrl.so.4.NN loads (install
 * libxenmisc4.17 on Debian 12, or set XENCHAN_LIBXENCTRL), with
 * XenCallError("xc_interface_open") off Xen or without root (see the
 * constructor). The caller owns the handle.
 */
export async function openDomainControl(): Promise<DomainControl> {
  return new DomainControl(await loadXenCtrl());
}
