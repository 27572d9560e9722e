/**
 * The Bun adapter: binds ffi/symbols.ts tables with bun:ffi. This file, its
 * worker ffi/poll_worker.ts and ffi/deno.ts are the only places that touch a
 * runtime's FFI. `bun:ffi` is loaded with Bun's `import.meta.require`, so that
 * Deno never sees it in its module graph (nor `deno publish` an import it
 * cannot analyze).
 *
 * @module
 */
import { siblingModuleUrl } from "./module_url.ts";
import type {
  CallbackArgs,
  CallbackDef,
  CallbackResult,
  FfiRuntime,
  LoadedLibrary,
  NativeCallback,
  NativeType,
  Ptr,
  SymbolTable,
} from "./types.ts";

/** A bound C function as bun:ffi returns it; ffi/types.ts gives it its real type. */
type NativeFn = (...args: unknown[]) => unknown;

/** One bun:ffi symbol definition (its FFIType names). */
interface BunDefinition {
  readonly args: string[];
  readonly returns: string;
}

/**
 * The part of bun:ffi this adapter uses, typed here because the module is
 * loaded by name at run time (Deno must not resolve it). Pointers are
 * plain numbers in Bun.
 */
interface BunFfi {
  dlopen(
    path: string,
    symbols: Record<string, BunDefinition>,
  ): { readonly symbols: Record<string, NativeFn> };
  ptr(view: ArrayBufferView): number;
  toArrayBuffer(pointer: number, offset: number, byteLength: number): ArrayBuffer;
  JSCallback: new (
    fn: (...args: unknown[]) => unknown,
    definition: BunDefinition,
  ) => { readonly ptr: number | null; close(): void };
}

/** Bun's synchronous require, on import.meta in ES modules. */
type BunImportMeta = ImportMeta & { require(id: string): unknown };
const ffi = (import.meta as BunImportMeta).require("bun:ffi") as BunFfi;

function bunType(type: NativeType): string {
  return type === "pointer" ? "ptr" : type;
}

function bunDefinition(def: SymbolTable[string]): BunDefinition {
  return { args: def.args.map(bunType), returns: bunType(def.returns) };
}

/** Bun's view of an opaque pointer: the number it is. */
function bunPointer(pointer: Ptr): number {
  return pointer as unknown as number;
}

function bindOne(path: string, name: string, def: SymbolTable[string]): NativeFn | null {
  try {
    return ffi.dlopen(path, { [name]: bunDefinition(def) }).symbols[name];
  } catch (error) {
    if (def.optional && error instanceof TypeError) return null;
    throw error;
  }
}

function asBlocking(fn: NativeFn): NativeFn {
  // Bun has no threaded FFI calls: a blocking symbol runs synchronously and is
  // only ever called from ffi/poll_worker.ts, never on the main thread.
  return (...args) => Promise.resolve(fn(...args));
}

/** Binds `table` from `path` for Bun; optional symbols are bound one by one. */
export function openBun<T extends SymbolTable>(path: string, table: T): LoadedLibrary<T> {
  const required = Object.entries(table).filter(([, def]) => !def.optional);
  const definitions = Object.fromEntries(required.map(([name, def]) => [name, bunDefinition(def)]));
  const library = ffi.dlopen(path, definitions);
  const symbols: Record<string, NativeFn | null> = {};
  for (const [name, def] of Object.entries(table)) {
    const fn = def.optional ? bindOne(path, name, def) : library.symbols[name];
    symbols[name] = fn && def.blocking ? asBlocking(fn) : fn;
  }
  return { path, symbols: symbols as unknown as LoadedLibrary<T>["symbols"] };
}

interface PollReply {
  readonly result: number;
  readonly fds: ArrayBuffer;
}

type PollWorker = Worker & { ref(): void; unref(): void };

/** Workers with no poll in flight, kept for the next call. */
const idleWorkers: PollWorker[] = [];

/**
 * Runs one poll(2) in a Worker: an idle one, or a new one when every worker
 * is busy (each FdPoller has at most one poll in flight, so there are as
 * many workers as pollers). A worker keeps the process alive only while
 * its poll is in flight.
 */
function pollInWorker(fds: Uint8Array, count: number, timeoutMs: number): Promise<number> {
  const worker = idleWorkers.pop() ??
    new Worker(siblingModuleUrl("./poll_worker", import.meta.url)) as PollWorker;
  worker.ref();
  return new Promise((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<PollReply>) => {
      fds.set(new Uint8Array(event.data.fds));
      worker.unref();
      idleWorkers.push(worker);
      resolve(event.data.result);
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(`poll worker failed: ${event.message}`));
    };
    const copy = fds.slice(0, count * 8);
    worker.postMessage({ fds: copy.buffer, count, timeoutMs }, [copy.buffer]);
  });
}

/** The Bun implementation of FfiRuntime. */
export const bunRuntime: FfiRuntime = {
  name: "bun",
  open: openBun,
  address(pointer: Ptr | null): bigint {
    return pointer === null ? 0n : BigInt(bunPointer(pointer));
  },
  pointer(address: bigint): Ptr | null {
    return address === 0n ? null : (Number(address) as unknown as Ptr);
  },
  addressOf(view: ArrayBufferView): bigint {
    return BigInt(ffi.ptr(view));
  },
  foreignBuffer(pointer: Ptr, byteLength: number): ArrayBuffer {
    return ffi.toArrayBuffer(bunPointer(pointer), 0, byteLength);
  },
  pollAsync: pollInWorker,
  callback<D extends CallbackDef>(
    def: D,
    fn: (...args: CallbackArgs<D>) => CallbackResult<D>,
  ): NativeCallback {
    const wide = def.args.map((t) => t === "i64" || t === "u64");
    const pointers = def.args.map((t) => t === "pointer");
    // Not threadsafe: a threadsafe JSCallback discards its return value (the
    // call is posted to the JS thread), and these callbacks return C results.
    const cb = new ffi.JSCallback((...raw: unknown[]) => {
      const args = raw.map((v, i) => {
        if (wide[i]) return BigInt(v as number | bigint);
        if (pointers[i]) return v === 0 || v === null || v === undefined ? null : v;
        return v;
      });
      return fn(...(args as CallbackArgs<D>));
    }, bunDefinition({ args: def.args, returns: def.returns }));
    if (cb.ptr === null) throw new Error("bun:ffi JSCallback gave no function pointer");
    const pointer = cb.ptr as unknown as Ptr;
    let open = true;
    return {
      pointer,
      close() {
        if (!open) return;
        open = false;
        cb.close();
      },
    };
  },
};
