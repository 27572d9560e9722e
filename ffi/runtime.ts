/**
 * Picks the FFI adapter for the running JavaScript runtime.
 *
 * @module
 */
import { XenError } from "../core/errors.ts";
import type { FfiRuntime } from "./types.ts";

let cached: Promise<FfiRuntime> | undefined;

/**
 * Returns the adapter for this runtime (ffi/deno.ts or ffi/bun.ts), loading
 * it on first use. Rejects with XenError on any other runtime (Node.js has no
 * built-in FFI that xenchan supports).
 */
export function ffiRuntime(): Promise<FfiRuntime> {
  cached ??= loadAdapter();
  return cached;
}

async function loadAdapter(): Promise<FfiRuntime> {
  if ("Deno" in globalThis) return (await import("./deno.ts")).denoRuntime;
  if ("Bun" in globalThis) return (await import("./bun.ts")).bunRuntime;
  throw new XenError('the FFI backend needs Deno or Bun; use backend "sim" elsewhere');
}
