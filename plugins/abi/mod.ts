/**
 * Event-delivery ABIs for simulated domains: 2-level, 3-level and FIFO,
 * each over an ArrayBuffer laid out byte-exactly like Xen's public headers.
 *
 * The simulator creates one ABI per domain with `createAbi`, choosing the
 * kind with `negotiateAbi` (FIFO with fallback to 2-level, as Linux does:
 * xen.fifo_events=1 by default, 2L if EVTCHNOP_init_control fails) and
 * `abiAfterReset` (EVTCHNOP_reset on DOMID_SELF reverts to 2-level).
 *
 * Pure TypeScript, no permissions, no runtime-specific imports.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import { checkArray, checkBoolean, checkOptions, describe } from "../../core/validate.ts";
import type { AbiParams } from "./base.ts";
import { FifoAbi } from "./fifo.ts";
import { FIFO, nrChannels2l, nrChannels3l, type WordBits } from "./layout.ts";
import { ThreeLevelAbi } from "./three_level.ts";
import { TwoLevelAbi } from "./two_level.ts";
import {
  type AbiKind,
  type AbiOptions,
  type EventAbi,
  hostIsLittleEndian,
  MAX_VCPUS,
} from "./types.ts";

export {
  FIFO,
  FIFO_BUSY_BIT,
  FIFO_LINKED_BIT,
  FIFO_MASKED_BIT,
  FIFO_PENDING_BIT,
  nrChannels2l,
  nrChannels3l,
  SHARED_INFO_32,
  SHARED_INFO_64,
  sharedInfoLayout,
  XEN_PAGE_SIZE,
} from "./layout.ts";
export type { AbiMemoryLayout, SharedInfoLayout, WordBits } from "./layout.ts";
export { MAX_VCPUS, NO_UPCALL, UNMASK_NOTHING } from "./types.ts";
export type { AbiKind, AbiOptions, DeliverFn, EventAbi, UnmaskResult } from "./types.ts";

/** The ABI a Linux guest asks for first (xen.fifo_events=1). */
export const DEFAULT_ABI: AbiKind = "fifo";

/**
 * Returns the maximum number of ports of an ABI: 2L 4096/1024, 3L
 * 262144/32768 (64/32-bit words), FIFO 131072 (any word size). Throws
 * XenUsageError for an unknown kind or word size.
 */
export function abiMaxPorts(kind: AbiKind, wordBits: WordBits = 64): number {
  if (wordBits !== 64 && wordBits !== 32) {
    throw new XenUsageError(`wordBits must be 64 or 32, got ${describe(wordBits)}`);
  }
  switch (kind) {
    case "2l":
      return nrChannels2l(wordBits);
    case "3l":
      return nrChannels3l(wordBits);
    case "fifo":
      return FIFO.NR_CHANNELS;
    default:
      throw new XenUsageError(`unknown event ABI ${describe(kind)}: use "2l", "3l" or "fifo"`);
  }
}

/**
 * Creates the event-delivery state of one domain. Returns a fresh EventAbi
 * owning a new ArrayBuffer (see EventAbi for every method's contract); the
 * caller owns it exclusively. Throws XenUsageError for an unknown kind, a
 * wordBits other than 64/32, vcpus outside 1..MAX_VCPUS, maxPorts outside
 * 2..abiMaxPorts(kind, wordBits), or a big-endian host.
 */
export function createAbi(kind: AbiKind, opts?: AbiOptions): EventAbi {
  opts = checkOptions("opts", opts);
  const wordBits = opts.wordBits ?? 64;
  const max = abiMaxPorts(kind, wordBits);
  const vcpus = opts.vcpus ?? 1;
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) {
    throw new XenUsageError(
      `vcpus must be an integer from 1 to ${MAX_VCPUS}, got ${describe(vcpus)}`,
    );
  }
  let ports = opts.maxPorts ?? max;
  if (!Number.isInteger(ports) || ports < 2 || ports > max) {
    throw new XenUsageError(
      `maxPorts must be an integer from 2 to ${max} for ${kind}, got ${describe(ports)}`,
    );
  }
  if (kind === "fifo") {
    ports = Math.min(max, Math.ceil(ports / FIFO.EVENT_WORDS_PER_PAGE) * FIFO.EVENT_WORDS_PER_PAGE);
  }
  if (!hostIsLittleEndian()) {
    throw new XenUsageError("the event ABIs need a little-endian host (x86 or Arm), as Xen does");
  }
  const initiallyMasked = opts.initiallyMasked === undefined
    ? true
    : checkBoolean("opts.initiallyMasked", opts.initiallyMasked);
  const p: AbiParams = { wordBits, vcpus, ports, initiallyMasked };
  switch (kind) {
    case "2l":
      return new TwoLevelAbi(p);
    case "3l":
      return new ThreeLevelAbi(p);
    default:
      return new FifoAbi(p);
  }
}

/**
 * Returns the ABI a guest ends up using: `preferred` when the hypervisor
 * supports it, else "2l", which every Xen supports ("This is the default
 * ABI, it is guaranteed to be supported"). For FIFO this models Linux's
 * xen_evtchn_fifo_init: EVTCHNOP_init_control failing (FIFO not in
 * `hypervisorSupports`) means 2L; for 3L, the RFC's
 * EVTCHNOP_register_extended failing means 2L. Pure; throws XenUsageError
 * for an unknown kind or a `hypervisorSupports` that is not an array.
 */
export function negotiateAbi(
  preferred: AbiKind = DEFAULT_ABI,
  hypervisorSupports: readonly AbiKind[] = ["2l", "fifo"],
): AbiKind {
  abiMaxPorts(preferred); // validates the kind
  for (const k of checkArray("hypervisorSupports", hypervisorSupports)) abiMaxPorts(k);
  return preferred === "2l" || hypervisorSupports.includes(preferred) ? preferred : "2l";
}

/**
 * Returns the ABI after EVTCHNOP_reset on DOMID_SELF: always "2l"
 * (event_channel.h: "resets event channel operations to 2-level ABI if
 * called with <dom> == DOMID_SELF and FIFO ABI was used"; a 2L domain stays
 * 2L). The caller must create a fresh ABI state (createAbi("2l", ...)):
 * reset closes every channel, so no pending state survives. Pure; throws
 * XenUsageError for an unknown kind.
 */
export function abiAfterReset(current: AbiKind): AbiKind {
  abiMaxPorts(current);
  return "2l";
}
