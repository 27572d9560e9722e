/**
 * Foreign memory from mmap'd grant pages, wrapped once and detached before
 * it is unmapped, so a stale view reads as empty instead of faulting.
 *
 * @module
 */
import { PAGE_SIZE } from "../core/driver.ts";
import type { ForeignMemory } from "../core/driver.ts";
import type { FfiRuntime, Ptr } from "./types.ts";

/** Grant pages mapped or shared through the C libraries. */
export class FfiMemory implements ForeignMemory {
  readonly count: number;
  readonly address: bigint;
  readonly pointer: Ptr;
  #buffer: ArrayBuffer;
  #bytes: Uint8Array;
  #pages: Uint8Array[];

  /** Wraps `count` pages at `pointer`; the caller owns the mapping. */
  constructor(runtime: FfiRuntime, pointer: Ptr, count: number) {
    this.count = count;
    this.pointer = pointer;
    this.address = runtime.address(pointer);
    this.#buffer = runtime.foreignBuffer(pointer, count * PAGE_SIZE);
    this.#bytes = new Uint8Array(this.#buffer);
    this.#pages = Array.from(
      { length: count },
      (_, i) => this.#bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE),
    );
  }

  get bytes(): Uint8Array {
    return this.#bytes;
  }

  get pages(): readonly Uint8Array[] {
    return this.#pages;
  }

  /** True once detach() ran. */
  get detached(): boolean {
    return this.#buffer.byteLength === 0;
  }

  /**
   * Detaches the buffer: every view handed out becomes zero-length. Call it
   * before munmap. Idempotent.
   */
  detach(): void {
    if (this.detached) return;
    this.#buffer.transfer(0);
  }
}
