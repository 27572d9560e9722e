/**
 * Byte layout of the event-delivery ABIs, transcribed from Xen's public
 * headers (xen/include/public/xen.h, event_channel.h, arch-x86/xen.h, and the
 * generated foreign/x86_32.h) and proved against them by
 * tests/abi_layout.test.ts, which compiles tests/fixtures/abi_layout.c with
 * gcc and compares every number below.
 *
 * Everything here is a plain constant or a pure function; nothing allocates.
 * All offsets are in bytes and little-endian (x86 and Arm).
 *
 * @module
 */

/** Width of xen_ulong_t: 64 on x86_64 and Arm, 32 on 32-bit x86. */
export type WordBits = 64 | 32;

/** XEN_PAGE_SIZE. */
export const XEN_PAGE_SIZE = 4096;

/**
 * struct vcpu_info / struct shared_info offsets for one word size
 * (xen.h: "struct vcpu_info ... 64 bytes (x86)").
 */
export interface SharedInfoLayout {
  /** sizeof(xen_ulong_t) in bytes. */
  readonly wordBytes: 8 | 4;
  /** sizeof(struct vcpu_info). */
  readonly vcpuInfoSize: number;
  /** offsetof(struct vcpu_info, evtchn_upcall_pending) (uint8_t). */
  readonly upcallPending: number;
  /** offsetof(struct vcpu_info, evtchn_upcall_mask) (uint8_t; x86 has XEN_HAVE_PV_UPCALL_MASK). */
  readonly upcallMask: number;
  /** offsetof(struct vcpu_info, evtchn_pending_sel) (xen_ulong_t). */
  readonly pendingSel: number;
  /** XEN_LEGACY_MAX_VCPUS: vcpu_info slots embedded in shared_info. */
  readonly legacyMaxVcpus: number;
  /** offsetof(struct shared_info, vcpu_info). */
  readonly vcpuInfo: number;
  /** offsetof(struct shared_info, evtchn_pending): xen_ulong_t[sizeof(xen_ulong_t) * 8]. */
  readonly evtchnPending: number;
  /** offsetof(struct shared_info, evtchn_mask). */
  readonly evtchnMask: number;
  /** sizeof(shared_info.evtchn_pending) == sizeof(shared_info.evtchn_mask). */
  readonly bitmapBytes: number;
  /** EVTCHN_2L_NR_CHANNELS = sizeof(xen_ulong_t)^2 * 64. */
  readonly nrChannels2l: number;
}

/** x86_64 (xen_ulong_t = unsigned long, 8 bytes). */
export const SHARED_INFO_64: SharedInfoLayout = Object.freeze({
  wordBytes: 8,
  vcpuInfoSize: 64,
  upcallPending: 0,
  upcallMask: 1,
  pendingSel: 8,
  legacyMaxVcpus: 32,
  vcpuInfo: 0,
  evtchnPending: 2048,
  evtchnMask: 2560,
  bitmapBytes: 512,
  nrChannels2l: 4096,
});

/** 32-bit x86 (xen_ulong_t = 4 bytes, the structures packed to 4). */
export const SHARED_INFO_32: SharedInfoLayout = Object.freeze({
  wordBytes: 4,
  vcpuInfoSize: 64,
  upcallPending: 0,
  upcallMask: 1,
  pendingSel: 4,
  legacyMaxVcpus: 32,
  vcpuInfo: 0,
  evtchnPending: 2048,
  evtchnMask: 2176,
  bitmapBytes: 128,
  nrChannels2l: 1024,
});

/** Returns the shared_info layout for a word size. Throws nothing. */
export function sharedInfoLayout(wordBits: WordBits): SharedInfoLayout {
  return wordBits === 64 ? SHARED_INFO_64 : SHARED_INFO_32;
}

/** EVTCHN_2L_NR_CHANNELS for a word size: 4096 (64-bit) or 1024 (32-bit). */
export function nrChannels2l(wordBits: WordBits): number {
  return wordBits * wordBits;
}

/**
 * The 3-level capacity, wordBits^3: 262,144 (64-bit) or 32,768 (32-bit).
 * 3L was never merged; see plugins/abi/README.md.
 */
export function nrChannels3l(wordBits: WordBits): number {
  return wordBits * wordBits * wordBits;
}

/** FIFO ABI constants (event_channel.h, identical on every architecture). */
export const FIFO = {
  /** EVTCHN_FIFO_PENDING: bit number in event_word_t. */
  PENDING: 31,
  /** EVTCHN_FIFO_MASKED. */
  MASKED: 30,
  /** EVTCHN_FIFO_LINKED. */
  LINKED: 29,
  /** EVTCHN_FIFO_BUSY. */
  BUSY: 28,
  /** EVTCHN_FIFO_LINK_BITS. */
  LINK_BITS: 17,
  /** EVTCHN_FIFO_LINK_MASK = (1 << 17) - 1. */
  LINK_MASK: 0x1ffff,
  /** EVTCHN_FIFO_NR_CHANNELS = 1 << 17 = 131,072. */
  NR_CHANNELS: 131072,
  /** EVTCHN_FIFO_MAX_QUEUES = PRIORITY_MIN + 1. */
  MAX_QUEUES: 16,
  /** EVTCHN_FIFO_PRIORITY_MAX (highest). */
  PRIORITY_MAX: 0,
  /** EVTCHN_FIFO_PRIORITY_DEFAULT. */
  PRIORITY_DEFAULT: 7,
  /** EVTCHN_FIFO_PRIORITY_MIN (lowest). */
  PRIORITY_MIN: 15,
  /** sizeof(event_word_t). */
  EVENT_WORD_BYTES: 4,
  /** Event words per event-array page (xen event_fifo.c EVTCHN_FIFO_EVENT_WORDS_PER_PAGE). */
  EVENT_WORDS_PER_PAGE: 1024,
  /** sizeof(struct evtchn_fifo_control_block). */
  CONTROL_BLOCK_SIZE: 72,
  /** offsetof(struct evtchn_fifo_control_block, ready). */
  CONTROL_READY: 0,
  /** offsetof(struct evtchn_fifo_control_block, head). */
  CONTROL_HEAD: 8,
} as const;

/** 1 << EVTCHN_FIFO_PENDING as a uint32 bit pattern (negative as int32). */
export const FIFO_PENDING_BIT = 1 << FIFO.PENDING;
/** 1 << EVTCHN_FIFO_MASKED. */
export const FIFO_MASKED_BIT = 1 << FIFO.MASKED;
/** 1 << EVTCHN_FIFO_LINKED. */
export const FIFO_LINKED_BIT = 1 << FIFO.LINKED;
/** 1 << EVTCHN_FIFO_BUSY. */
export const FIFO_BUSY_BIT = 1 << FIFO.BUSY;

/** Where one domain's ABI state lives inside its ArrayBuffer. */
export interface AbiMemoryLayout {
  /** Total bytes; always a whole number of pages. */
  readonly byteLength: number;
  /** The shared_info page always starts at 0. */
  readonly sharedInfo: 0;
  /**
   * Byte offset of vcpu_info for vCPU v: shared_info.vcpu_info[v] for
   * v < XEN_LEGACY_MAX_VCPUS, else a slot in the page(s) that follow
   * shared_info, as if placed there with VCPUOP_register_vcpu_info.
   */
  readonly vcpuInfo: readonly number[];
  /** 3L: the shared L3 pending bitmap (page aligned), or -1. */
  readonly l3Pending: number;
  /** 3L: the shared L3 mask bitmap (page aligned), or -1. */
  readonly l3Mask: number;
  /** 3L: each vCPU's L2 selector (wordBits words), or empty. */
  readonly l2Selector: readonly number[];
  /** FIFO: each vCPU's evtchn_fifo_control_block (offset 0 of its own page), or empty. */
  readonly controlBlock: readonly number[];
  /** FIFO: the first event-array page (event word of port p at eventArray + 4 * p), or -1. */
  readonly eventArray: number;
}

function pages(bytes: number): number {
  return Math.ceil(bytes / XEN_PAGE_SIZE) * XEN_PAGE_SIZE;
}

/**
 * Computes the memory layout for an ABI instance. `ports` is the number of
 * ports the instance supports (already validated by the caller). Pure; throws
 * nothing.
 */
export function computeLayout(
  kind: "2l" | "3l" | "fifo",
  wordBits: WordBits,
  vcpus: number,
  ports: number,
): AbiMemoryLayout {
  const si = sharedInfoLayout(wordBits);
  let next = XEN_PAGE_SIZE;
  const vcpuInfo: number[] = [];
  const extra = Math.max(0, vcpus - si.legacyMaxVcpus);
  for (let v = 0; v < vcpus; v++) {
    vcpuInfo.push(
      v < si.legacyMaxVcpus
        ? si.vcpuInfo + v * si.vcpuInfoSize
        : next + (v - si.legacyMaxVcpus) * si.vcpuInfoSize,
    );
  }
  next += pages(extra * si.vcpuInfoSize);
  let l3Pending = -1, l3Mask = -1, eventArray = -1;
  const l2Selector: number[] = [];
  const controlBlock: number[] = [];
  if (kind === "3l") {
    const bitmap = pages(ports / 8);
    l3Pending = next;
    l3Mask = next + bitmap;
    next += 2 * bitmap;
    const l2Bytes = wordBits * si.wordBytes; // wordBits words of xen_ulong_t
    for (let v = 0; v < vcpus; v++) l2Selector.push(next + v * l2Bytes);
    next += pages(vcpus * l2Bytes);
  } else if (kind === "fifo") {
    for (let v = 0; v < vcpus; v++) controlBlock.push(next + v * XEN_PAGE_SIZE);
    next += vcpus * XEN_PAGE_SIZE;
    eventArray = next;
    next += pages(ports * FIFO.EVENT_WORD_BYTES);
  }
  return Object.freeze({
    byteLength: next,
    sharedInfo: 0 as const,
    vcpuInfo: Object.freeze(vcpuInfo),
    l3Pending,
    l3Mask,
    l2Selector: Object.freeze(l2Selector),
    controlBlock: Object.freeze(controlBlock),
    eventArray,
  });
}
