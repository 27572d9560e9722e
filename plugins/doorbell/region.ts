/**
 * A memory-region model with QEMU ioeventfd semantics: an MMIO/PIO region
 * of a given size with an I/O write callback (and an optional read
 * callback), on which addresses can be registered as doorbells
 * (memory_region_add_eventfd / KVM_IOEVENTFD).
 *
 * The rule, from QEMU's system/memory.c (memory_region_dispatch_write ->
 * memory_region_dispatch_write_eventfds) and Linux's virt/kvm/eventfd.c
 * (ioeventfd_write -> ioeventfd_in_range, -EOPNOTSUPP on a miss):
 *
 *   match = addr == reg.addr
 *           && (reg.size == 0 || size == reg.size)      (size 0: any-length wildcard)
 *           && (!reg.matchData || data == reg.data)
 *
 * - A matching write signals that registration's notifier once and the
 *   region's write callback is NOT called.
 * - A write that matches no registration goes to the write callback exactly
 *   as if no doorbell were registered: same address, value and size. That
 *   includes a write of the right value with the wrong size, a write of the
 *   wrong value, and a write next to a doorbell.
 * - Reads never match a doorbell; they always go to the read callback.
 *
 * Registration conflicts follow the kernel's collision check
 * (ioeventfd_check_collision, which makes KVM_IOEVENTFD fail with EEXIST):
 * two registrations collide when they have the same address and
 *   - either has size 0 (the wildcard covers every length), or
 *   - they have the same size and either has no data match (it covers every
 *     value) or both match the same data.
 * A collision of identical keys (addr, size, matchData and, with matchData,
 * data) is a "duplicate"; any other collision is an "overlap". Both are
 * refused whatever the notifier, as the kernel refuses them whatever the
 * eventfd. Registrations at the same address with different sizes, or with
 * different match values, do not collide, and neither do registrations at
 * different addresses whose byte ranges intersect (the kernel compares
 * start addresses only). Consequently at most one registration matches any
 * write.
 *
 * Out-of-region accesses (any byte outside [0, size)) get QEMU's behaviour
 * for an address nothing decodes (unassigned_mem_write/read): nothing is
 * called, a write is discarded, a read returns 0, and the result is
 * "decode-error" (MEMTX_DECODE_ERROR). Arguments no access can have (a
 * negative or fractional address, an access size other than 1, 2, 4 or 8, a
 * value wider than the access) throw XenUsageError instead.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import type { DoorbellNotifier } from "./notifier.ts";

/** The width of one access in bytes. */
export type AccessSize = 1 | 2 | 4 | 8;

/** A registration's size: an access size, or 0 for "any length" (KVM's wildcard). */
export type DoorbellSize = 0 | AccessSize;

/** The region's device callbacks (QEMU's MemoryRegionOps). */
export interface RegionOps {
  /**
   * Called for every in-region write that no doorbell registration matches,
   * with the guest's address (offset in the region), value and size. May
   * call any method of the region (a nested write, add/delEventfd); changes
   * apply to later accesses. What it throws propagates out of write().
   */
  write(addr: number, data: bigint, size: AccessSize): void;
  /**
   * Called for every in-region read; returns the value (bigint or a
   * non-negative safe integer number), masked to `size` bytes. Without it
   * reads return 0n. What it throws propagates out of read().
   */
  read?(addr: number, size: AccessSize): bigint | number;
}

/** How a write was dispatched. */
export type WriteResult =
  /** A registration matched: its notifier was signalled, the callback was not called. */
  | "notified"
  /** No registration matched: the write callback was called. */
  | "callback"
  /** The access is not inside the region: nothing was called (MEMTX_DECODE_ERROR). */
  | "decode-error";

/** The outcome of a read. */
export interface ReadResult {
  /** "ok", or "decode-error" for an access outside the region (then value is 0n). */
  readonly result: "ok" | "decode-error";
  readonly value: bigint;
}

/** One doorbell registration, as listed by MemoryRegion.ioeventfds(). */
export interface IoeventfdInfo {
  readonly addr: number;
  readonly size: DoorbellSize;
  readonly matchData: boolean;
  /** The value to match; 0n when matchData is false (the value given is ignored then). */
  readonly data: bigint;
  readonly notifier: DoorbellNotifier;
}

/** Why a registration change was refused. */
export type IoeventfdErrorReason = "duplicate" | "overlap" | "not-found";

/**
 * A refused addEventfd() ("duplicate", "overlap": `existing` is the
 * registration it collides with) or delEventfd() ("not-found"). Branch on
 * `reason`, not on the message.
 */
export class IoeventfdError extends XenUsageError {
  override name = "IoeventfdError";
  constructor(
    readonly reason: IoeventfdErrorReason,
    message: string,
    readonly existing?: IoeventfdInfo,
  ) {
    super(message);
  }
}

const ACCESS_SIZES: readonly number[] = [1, 2, 4, 8];
const U64_MAX = 0xffffffffffffffffn;

function describeKey(info: Omit<IoeventfdInfo, "notifier">): string {
  const data = info.matchData ? `data 0x${info.data.toString(16)}` : "any data";
  return `addr 0x${info.addr.toString(16)} size ${
    info.size === 0 ? "0 (any length)" : info.size
  } ${data}`;
}

/** The value mask of each access size (index = size in bytes). */
const MASKS: readonly bigint[] = [0n, 0xffn, 0xffffn, 0n, 0xffffffffn, 0n, 0n, 0n, U64_MAX];

function mask(size: number): bigint {
  return MASKS[size];
}

function toU64(what: string, value: unknown): bigint {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === "bigint" && value >= 0n && value <= U64_MAX) return value;
  throw new XenUsageError(
    `${what} must be a bigint (or safe integer) in 0..2^64-1, got ${String(value)}`,
  );
}

function checkAddr(value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new XenUsageError(`address must be a non-negative safe integer, got ${String(value)}`);
  }
  return value;
}

function checkAccessSize(value: unknown): AccessSize {
  if (value !== 1 && value !== 2 && value !== 4 && value !== 8) {
    throw new XenUsageError(`access size must be 1, 2, 4 or 8, got ${String(value)}`);
  }
  return value as AccessSize;
}

/** Kernel collision check (virt/kvm/eventfd.c ioeventfd_check_collision). */
function collides(a: IoeventfdInfo, b: Omit<IoeventfdInfo, "notifier">): boolean {
  return a.addr === b.addr &&
    (a.size === 0 || b.size === 0 ||
      (a.size === b.size && (!a.matchData || !b.matchData || a.data === b.data)));
}

function sameKey(a: IoeventfdInfo, b: Omit<IoeventfdInfo, "notifier">): boolean {
  return a.addr === b.addr && a.size === b.size && a.matchData === b.matchData && a.data === b.data;
}

/**
 * One I/O memory region (memory_region_init_io) with doorbell registrations.
 *
 * Not thread-safe (JavaScript objects are not shared between Workers).
 * Reentrancy: callbacks and notifiers may call any method of the region,
 * including a nested write(); registrations added or deleted meanwhile apply
 * to later accesses.
 */
export class MemoryRegion {
  /** A name for messages (QEMU's region name). */
  readonly name: string;
  /** The region's size in bytes; valid offsets are 0..size-1. */
  readonly size: number;
  readonly #ops: RegionOps;
  /** Registrations by address, each list in registration order. */
  readonly #byAddr = new Map<number, IoeventfdInfo[]>();
  #count = 0;

  /**
   * Creates a region of `size` bytes (a positive safe integer) whose
   * unmatched writes go to `ops.write` and reads to `ops.read`. Throws
   * XenUsageError for a bad size or a missing write callback.
   */
  constructor(name: string, size: number, ops: RegionOps) {
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
      throw new XenUsageError(`region size must be a positive safe integer, got ${String(size)}`);
    }
    if (typeof ops?.write !== "function") {
      throw new XenUsageError("a region needs a write callback (ops.write)");
    }
    if (ops.read !== undefined && typeof ops.read !== "function") {
      throw new XenUsageError("ops.read must be a function when given");
    }
    this.name = String(name);
    this.size = size;
    this.#ops = ops;
  }

  /** Number of doorbell registrations. */
  get registrations(): number {
    return this.#count;
  }

  #key(
    addr: unknown,
    size: unknown,
    matchData: unknown,
    data: unknown,
  ): Omit<IoeventfdInfo, "notifier"> {
    const a = checkAddr(addr);
    if (typeof size !== "number" || !(size === 0 || ACCESS_SIZES.includes(size))) {
      throw new XenUsageError(
        `doorbell size must be 0 (any length), 1, 2, 4 or 8, got ${String(size)}`,
      );
    }
    if (typeof matchData !== "boolean") {
      throw new XenUsageError(`matchData must be a boolean, got ${String(matchData)}`);
    }
    const value = toU64("data", data);
    if (a + Math.max(size, 1) > this.size) {
      throw new XenUsageError(
        `doorbell at 0x${a.toString(16)} size ${size} is outside region ${this.name} (size 0x${
          this.size.toString(16)
        })`,
      );
    }
    if (matchData && size === 0) {
      throw new XenUsageError(
        "a size 0 (any length) doorbell cannot match data (KVM_IOEVENTFD refuses it: EINVAL)",
      );
    }
    if (matchData && value > mask(size)) {
      throw new XenUsageError(
        `data 0x${value.toString(16)} does not fit a ${size}-byte access: it could never match`,
      );
    }
    return { addr: a, size: size as DoorbellSize, matchData, data: matchData ? value : 0n };
  }

  /**
   * Registers a doorbell (memory_region_add_eventfd): from now on a write
   * matching (addr, size, matchData, data) signals `notifier` instead of
   * calling the write callback. With matchData false, `data` is ignored.
   * size 0 matches a write of any length at `addr` and cannot be combined
   * with matchData. The region keeps a reference to `notifier` but does not
   * own it.
   *
   * Throws IoeventfdError (a XenUsageError) with reason "duplicate" or
   * "overlap" when the registration collides with an existing one (see the
   * module comment; nothing is changed), XenUsageError for an address or
   * size outside the region, a size other than 0/1/2/4/8, a non-boolean
   * matchData, data that is not a uint64 or does not fit `size` bytes, or a
   * notifier without a notify() method.
   */
  addEventfd(
    addr: number,
    size: DoorbellSize,
    matchData: boolean,
    data: bigint,
    notifier: DoorbellNotifier,
  ): void {
    const key = this.#key(addr, size, matchData, data);
    if (typeof (notifier as { notify?: unknown } | null)?.notify !== "function") {
      throw new XenUsageError("the notifier must have a notify() method");
    }
    const list = this.#byAddr.get(key.addr) ?? [];
    const existing = list.find((reg) => collides(reg, key));
    if (existing) {
      const duplicate = sameKey(existing, key);
      throw new IoeventfdError(
        duplicate ? "duplicate" : "overlap",
        `${duplicate ? "duplicate" : "overlapping"} doorbell in ${this.name}: ${
          describeKey(key)
        } collides with the ` +
          `registered ${describeKey(existing)} (the kernel refuses this with EEXIST)`,
        existing,
      );
    }
    this.#byAddr.set(key.addr, [...list, { ...key, notifier }]);
    this.#count++;
  }

  /**
   * Removes the registration with exactly this key and notifier
   * (memory_region_del_eventfd, KVM_IOEVENTFD_FLAG_DEASSIGN): the same
   * addr, size, matchData, data (ignored when matchData is false) and the
   * same notifier object. Later matching writes go to the callback again.
   * Throws IoeventfdError with reason "not-found" when there is no such
   * registration (the kernel says ENOENT; QEMU asserts), XenUsageError for
   * malformed arguments as in addEventfd().
   */
  delEventfd(
    addr: number,
    size: DoorbellSize,
    matchData: boolean,
    data: bigint,
    notifier: DoorbellNotifier,
  ): void {
    const key = this.#key(addr, size, matchData, data);
    const list = this.#byAddr.get(key.addr) ?? [];
    const index = list.findIndex((reg) => sameKey(reg, key) && reg.notifier === notifier);
    if (index < 0) {
      const other = list.find((reg) => sameKey(reg, key));
      throw new IoeventfdError(
        "not-found",
        `no doorbell in ${this.name} with ${describeKey(key)}` +
          (other ? " and this notifier (one is registered with a different notifier)" : ""),
        other,
      );
    }
    const rest = list.filter((_, i) => i !== index);
    if (rest.length === 0) this.#byAddr.delete(key.addr);
    else this.#byAddr.set(key.addr, rest);
    this.#count--;
  }

  /** Every registration, ordered by address, then registration order. */
  ioeventfds(): IoeventfdInfo[] {
    return [...this.#byAddr.keys()].sort((a, b) => a - b).flatMap((addr) =>
      this.#byAddr.get(addr)!
    );
  }

  /**
   * The registration a write of (addr, data, size) would signal, or null
   * when it would go to the callback (or is outside the region). Same
   * argument checks as write(); calls nothing.
   */
  match(addr: number, data: bigint | number, size: AccessSize): IoeventfdInfo | null {
    const access = this.#access(addr, data, size);
    return access ? this.#find(access.addr, access.data, access.size) : null;
  }

  #access(
    addr: unknown,
    data: unknown,
    size: unknown,
  ): { addr: number; data: bigint; size: AccessSize } | null {
    const a = checkAddr(addr);
    const s = checkAccessSize(size);
    const value = toU64("data", data);
    if (value > mask(s)) {
      throw new XenUsageError(`value 0x${value.toString(16)} does not fit a ${s}-byte access`);
    }
    return a + s > this.size ? null : { addr: a, data: value, size: s };
  }

  #find(addr: number, data: bigint, size: AccessSize): IoeventfdInfo | null {
    const list = this.#byAddr.get(addr);
    if (list === undefined) return null;
    for (const reg of list) {
      if ((reg.size === 0 || reg.size === size) && (!reg.matchData || reg.data === data)) {
        return reg;
      }
    }
    return null;
  }

  /**
   * A guest write of `data` (`size` bytes) at offset `addr`
   * (memory_region_dispatch_write). Returns "notified" when a registration
   * matched (its notifier was signalled once; the callback was not called),
   * "callback" when none matched (ops.write was called exactly as without
   * doorbells), "decode-error" when the access is not inside the region
   * (nothing called, write discarded).
   *
   * Throws XenUsageError for a negative or non-integer address, a size
   * other than 1/2/4/8, or a value that is not a uint64 fitting `size` bytes
   * (thrown before anything is called); otherwise whatever the notifier or
   * the callback throws, unchanged.
   */
  write(addr: number, data: bigint | number, size: AccessSize): WriteResult {
    const access = this.#access(addr, data, size);
    if (access === null) return "decode-error";
    const reg = this.#find(access.addr, access.data, access.size);
    if (reg !== null) {
      reg.notifier.notify();
      return "notified";
    }
    this.#ops.write(access.addr, access.data, access.size);
    return "callback";
  }

  /**
   * A guest read of `size` bytes at offset `addr`
   * (memory_region_dispatch_read). Doorbells never match reads. Returns
   * { result: "ok", value } with the read callback's value masked to `size`
   * bytes (0n without a read callback), or { result: "decode-error",
   * value: 0n } outside the region (nothing called). Throws XenUsageError
   * for a bad address or size, or when the callback returns something that
   * is not a uint64; otherwise what the callback throws.
   */
  read(addr: number, size: AccessSize): ReadResult {
    const access = this.#access(addr, 0n, size);
    if (access === null) return { result: "decode-error", value: 0n };
    const raw = this.#ops.read?.(access.addr, access.size) ?? 0n;
    return { result: "ok", value: toU64("read callback result", raw) & mask(access.size) };
  }
}
