/**
 * An ivshmem-style doorbell device (QEMU hw/misc/ivshmem.c): BAR0 is a
 * 256-byte register region whose DOORBELL register (offset 12) a guest
 * writes with `(peer << 16) | vector` to interrupt vector `vector` of peer
 * `peer`. For every (peer, vector) in use the device registers
 *
 *   addEventfd(DOORBELL, 4, true, (peer << 16) | vector, notifier)
 *
 * exactly as ivshmem does, so a 4-byte write of that value at DOORBELL
 * signals that peer's notifier and nothing else; every other write (an
 * unknown peer or vector, a 2-byte write of a valid value, a write to
 * another register) goes to the device's write callback.
 *
 * @module
 */
import { ClosedHandleError, XenUsageError } from "../../core/errors.ts";
import { checkInteger, checkOptions } from "../../core/validate.ts";
import type { DoorbellNotifier } from "./notifier.ts";
import { type AccessSize, MemoryRegion, type WriteResult } from "./region.ts";

/** ivshmem BAR0 register offsets. */
export const IVSHMEM_REGISTERS = {
  /** Interrupt mask (read/write, handled by the write/read callbacks here). */
  INTRMASK: 0,
  /** Interrupt status. */
  INTRSTATUS: 4,
  /** This device's peer number (read-only). */
  IVPOSITION: 8,
  /** Doorbell: write (peer << 16) | vector. */
  DOORBELL: 12,
} as const;

/** The size of ivshmem's BAR0 register region (IVSHMEM_REG_BAR_SIZE). */
export const IVSHMEM_BAR0_SIZE = 0x100;

/** The largest peer number and vector number (each is a 16-bit field). */
export const IVSHMEM_MAX_ID = 0xffff;

/**
 * The doorbell value for `vector` of `peer`: `(peer << 16) | vector`, as
 * an unsigned 32-bit bigint. Throws XenUsageError unless both are integers
 * in 0..0xffff.
 */
export function doorbellValue(peer: number, vector: number): bigint {
  checkInteger("peer", peer, 0, IVSHMEM_MAX_ID);
  checkInteger("vector", vector, 0, IVSHMEM_MAX_ID);
  return BigInt(peer * 0x10000 + vector);
}

/** Options for an IvshmemDoorbell. */
export interface IvshmemOptions {
  /** This device's own peer number, returned by reads of IVPOSITION (default 0). */
  readonly position?: number;
  /**
   * Receives every write no doorbell matches (the device's I/O callback):
   * offset, value and size exactly as written. Default: discard.
   */
  readonly onWrite?: (addr: number, data: bigint, size: AccessSize) => void;
  /** Answers reads of every register but IVPOSITION. Default: 0n. */
  readonly onRead?: (addr: number, size: AccessSize) => bigint;
}

/**
 * The doorbell half of an ivshmem device. It owns its registrations (close()
 * removes them all) but borrows the notifiers: closing the device never
 * closes a notifier. Callbacks and notifiers may call setPeer/removePeer;
 * the change applies to later writes (MemoryRegion's reentrancy rule).
 */
export class IvshmemDoorbell implements Disposable {
  /** The BAR0 register region; guests access it through write()/read() or here. */
  readonly region: MemoryRegion;
  /** This device's IVPOSITION. */
  readonly position: number;
  readonly #peers = new Map<number, readonly DoorbellNotifier[]>();
  #closed = false;

  /**
   * Creates the device with no peers. Throws XenUsageError for options
   * that are not an object, a position outside 0..0xffff or callbacks that
   * are not functions.
   */
  constructor(options?: IvshmemOptions) {
    options = checkOptions("options", options);
    this.position = checkInteger("position", options.position ?? 0, 0, IVSHMEM_MAX_ID);
    const onWrite = options.onWrite ?? (() => {});
    const onRead = options.onRead ?? (() => 0n);
    if (typeof onWrite !== "function" || typeof onRead !== "function") {
      throw new XenUsageError("onWrite and onRead must be functions when given");
    }
    this.region = new MemoryRegion("ivshmem-mmio", IVSHMEM_BAR0_SIZE, {
      write: onWrite,
      read: (addr, size) =>
        addr === IVSHMEM_REGISTERS.IVPOSITION ? BigInt(this.position) : onRead(addr, size),
    });
  }

  #live(): void {
    if (this.#closed) throw new ClosedHandleError("ivshmem doorbell");
  }

  /**
   * Registers peer `peer` with one notifier per vector: `notifiers[v]` is
   * signalled by a 4-byte DOORBELL write of `(peer << 16) | v`. All or
   * nothing: on any error no registration of this call remains. Throws
   * XenUsageError for a peer outside 0..0xffff, more than 65536 vectors, a
   * peer already registered (removePeer() it first), a notifier without
   * notify(); IoeventfdError when a registration collides with one added
   * directly on `region`; ClosedHandleError after close().
   */
  setPeer(peer: number, notifiers: readonly DoorbellNotifier[]): void {
    this.#live();
    checkInteger("peer", peer, 0, IVSHMEM_MAX_ID);
    if (!Array.isArray(notifiers) || notifiers.length > IVSHMEM_MAX_ID + 1) {
      throw new XenUsageError(
        `notifiers must be an array of at most ${IVSHMEM_MAX_ID + 1} notifiers`,
      );
    }
    if (this.#peers.has(peer)) {
      throw new XenUsageError(`peer ${peer} is already registered; removePeer(${peer}) first`);
    }
    const done: number[] = [];
    try {
      notifiers.forEach((notifier, vector) => {
        this.region.addEventfd(
          IVSHMEM_REGISTERS.DOORBELL,
          4,
          true,
          doorbellValue(peer, vector),
          notifier,
        );
        done.push(vector);
      });
    } catch (error) {
      for (const vector of done) {
        this.region.delEventfd(
          IVSHMEM_REGISTERS.DOORBELL,
          4,
          true,
          doorbellValue(peer, vector),
          notifiers[vector],
        );
      }
      throw error;
    }
    this.#peers.set(peer, [...notifiers]);
  }

  /**
   * Deletes every registration of `peer`; its doorbell values then go to the
   * write callback. Throws XenUsageError for a peer that is not registered,
   * ClosedHandleError after close().
   */
  removePeer(peer: number): void {
    this.#live();
    const notifiers = this.#peers.get(peer);
    if (notifiers === undefined) throw new XenUsageError(`peer ${String(peer)} is not registered`);
    notifiers.forEach((notifier, vector) => {
      this.region.delEventfd(
        IVSHMEM_REGISTERS.DOORBELL,
        4,
        true,
        doorbellValue(peer, vector),
        notifier,
      );
    });
    this.#peers.delete(peer);
  }

  /** Registered peers, ascending. */
  peers(): number[] {
    return [...this.#peers.keys()].sort((a, b) => a - b);
  }

  /** Number of vectors registered for `peer` (0 when not registered). */
  vectors(peer: number): number {
    return this.#peers.get(peer)?.length ?? 0;
  }

  /**
   * The guest rings: a 4-byte write of `(peer << 16) | vector` at DOORBELL.
   * Returns "notified" when that peer and vector are registered, else
   * "callback" (onWrite got the value). Throws XenUsageError for ids out of
   * 0..0xffff, ClosedHandleError after close(), and what the notifier or
   * onWrite throws.
   */
  ring(peer: number, vector: number): WriteResult {
    this.#live();
    return this.region.write(IVSHMEM_REGISTERS.DOORBELL, doorbellValue(peer, vector), 4);
  }

  /** Any guest write to BAR0 (MemoryRegion.write semantics). Throws ClosedHandleError after close(). */
  write(addr: number, data: bigint | number, size: AccessSize): WriteResult {
    this.#live();
    return this.region.write(addr, data, size);
  }

  /** A guest read of BAR0 (MemoryRegion.read semantics); IVPOSITION returns `position`. */
  read(addr: number, size: AccessSize): bigint {
    this.#live();
    return this.region.read(addr, size).value;
  }

  /** Removes every peer's registrations; notifiers stay open. Idempotent; never throws. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [peer, notifiers] of this.#peers) {
      notifiers.forEach((notifier, vector) => {
        try {
          this.region.delEventfd(
            IVSHMEM_REGISTERS.DOORBELL,
            4,
            true,
            doorbellValue(peer, vector),
            notifier,
          );
        } catch {
          // Already deleted directly on `region`: nothing left to remove.
        }
      });
    }
    this.#peers.clear();
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
