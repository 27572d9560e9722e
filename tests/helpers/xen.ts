/**
 * Test helpers for the real-Xen (FFI) backend: whether this machine is a Xen
 * dom0 the tests can use, found by asking the library itself (never by
 * checking /dev/xen paths, which needs extra Deno permissions).
 *
 * @module
 */
import { openEventChannels, XenCallError } from "../../mod.ts";

/** Why the FFI backend cannot be exercised here, or null when it can. */
export async function whyNoXen(): Promise<string | null> {
  try {
    const handle = await openEventChannels({ backend: "ffi" });
    handle.close();
    return null;
  } catch (error) {
    if (error instanceof XenCallError) return `no usable /dev/xen/evtchn here (${error.code})`;
    return `FFI backend unavailable: ${(error as Error).message}`;
  }
}

/** Resolves after `ms` milliseconds of real time. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An AbortSignal that aborts after `ms` (a safety net so a lost event fails instead of hanging). */
export function deadline(ms = 10_000): AbortSignal {
  return AbortSignal.timeout(ms);
}
