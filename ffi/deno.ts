/**
 * The Deno adapter: binds ffi/symbols.ts tables with Deno.dlopen. This file
 * and ffi/bun.ts are the only places that touch a runtime's FFI.
 *
 * @module
 */
import { LIBC_WAIT } from "./symbols.ts";
import type {
  CallbackArgs,
  CallbackDef,
  CallbackResult,
  FfiRuntime,
  LoadedLibrary,
  NativeCallback,
  Ptr,
  SymbolTable,
} from "./types.ts";

type DenoSymbols = Record<string, Deno.ForeignFunction>;

function denoDefinitions(table: SymbolTable): DenoSymbols {
  const out: DenoSymbols = {};
  for (const [name, def] of Object.entries(table)) {
    out[name] = {
      parameters: [...def.args],
      result: def.returns,
      ...(def.blocking ? { nonblocking: true } : {}),
      ...(def.optional ? { optional: true } : {}),
    } as Deno.ForeignFunction;
  }
  return out;
}

let waitLibrary: LoadedLibrary<typeof LIBC_WAIT> | undefined;

/** The Deno implementation of FfiRuntime. Stateless except for the lazily opened poll symbol. */
export const denoRuntime: FfiRuntime = {
  name: "deno",
  open<T extends SymbolTable>(path: string, table: T): LoadedLibrary<T> {
    const library = Deno.dlopen(path, denoDefinitions(table));
    return { path, symbols: library.symbols as unknown as LoadedLibrary<T>["symbols"] };
  },
  address(pointer: Ptr | null): bigint {
    return BigInt(Deno.UnsafePointer.value(pointer as Deno.PointerValue));
  },
  pointer(address: bigint): Ptr | null {
    return Deno.UnsafePointer.create(address) as unknown as Ptr | null;
  },
  addressOf(view: ArrayBufferView): bigint {
    const pointer = Deno.UnsafePointer.of(view as Uint8Array<ArrayBuffer>);
    return BigInt(Deno.UnsafePointer.value(pointer));
  },
  foreignBuffer(pointer: Ptr, byteLength: number): ArrayBuffer {
    const value = pointer as unknown as Deno.PointerObject;
    return Deno.UnsafePointerView.getArrayBuffer(value, byteLength);
  },
  pollAsync(fds: Uint8Array, count: number, timeoutMs: number): Promise<number> {
    waitLibrary ??= denoRuntime.open("libc.so.6", LIBC_WAIT);
    // An in-flight nonblocking call keeps Deno's event loop alive by itself.
    return waitLibrary.symbols.poll(fds, BigInt(count), timeoutMs);
  },
  callback<D extends CallbackDef>(
    def: D,
    fn: (...args: CallbackArgs<D>) => CallbackResult<D>,
  ): NativeCallback {
    const wide = def.args.map((t) => t === "i64" || t === "u64");
    const definition = {
      parameters: [...def.args],
      result: def.returns,
    } as Deno.UnsafeCallbackDefinition;
    // Same-thread calls run synchronously on the C caller's stack; never threadSafe().
    type Raw = (...raw: unknown[]) => Deno.PointerValue | number | bigint | void;
    const run: Raw = (...raw) => {
      const args = raw.map((v, i) => (wide[i] ? BigInt(v as number | bigint) : v));
      return fn(...(args as CallbackArgs<D>)) as unknown as Deno.PointerValue | number | bigint;
    };
    const cb = new Deno.UnsafeCallback(
      definition,
      run as ConstructorParameters<typeof Deno.UnsafeCallback>[1],
    );
    let open = true;
    return {
      pointer: cb.pointer as unknown as Ptr,
      close() {
        if (!open) return;
        open = false;
        cb.close();
      },
    };
  },
};
