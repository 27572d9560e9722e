/**
 * The runtime-neutral vocabulary of the FFI layer: native types, symbol
 * definitions, typed bindings derived from a table, and the adapter interface
 * that ffi/deno.ts and ffi/bun.ts implement.
 *
 * @module
 */

/** Native types, in Deno's vocabulary (the Bun adapter translates them). */
export type NativeType =
  | "void"
  | "i16"
  | "u16"
  | "i32"
  | "u32"
  | "i64"
  | "u64"
  | "pointer"
  | "buffer";

/** One C function: argument types, result type, and whether it may block. */
export interface FnDef {
  readonly args: readonly NativeType[];
  readonly returns: NativeType;
  /**
   * The call may block: Deno runs it on a helper thread (it returns a
   * Promise); Bun has no such mode, so a blocking symbol is only ever called
   * from a Worker there. errno is not readable after a blocking call.
   */
  readonly blocking?: true;
  /** The symbol appeared in a later library version; missing means null. */
  readonly optional?: true;
}

/** A table of C functions keyed by their real C names. */
export type SymbolTable = Readonly<Record<string, FnDef>>;

declare const ptrBrand: unique symbol;
/**
 * An opaque foreign pointer (Deno: a pointer object, Bun: a number). Never
 * compare with `===` and never use as a Map key: use `FfiRuntime.address`.
 */
export type Ptr = { readonly [ptrBrand]: true };

type JsArg<T extends NativeType> = T extends "i64" | "u64" ? bigint
  : T extends "pointer" ? Ptr | null
  : T extends "buffer" ? ArrayBufferView | null
  : number;

type JsResult<T extends NativeType> = T extends "void" ? void
  : T extends "i64" | "u64" ? bigint
  : T extends "pointer" ? Ptr | null
  : number;

type JsArgs<A extends readonly NativeType[]> = { -readonly [K in keyof A]: JsArg<A[K]> };

type BoundFn<F extends FnDef> = F["blocking"] extends true
  ? (...args: JsArgs<F["args"]>) => Promise<JsResult<F["returns"]>>
  : (...args: JsArgs<F["args"]>) => JsResult<F["returns"]>;

/** The typed functions of a loaded table; optional symbols may be null. */
export type Bound<T extends SymbolTable> = {
  readonly [K in keyof T]: T[K]["optional"] extends true ? BoundFn<T[K]> | null : BoundFn<T[K]>;
};

/**
 * One C function pointer type that JavaScript implements: its argument and
 * result types ("buffer" is not allowed: pointers arrive as Ptr).
 */
export interface CallbackDef {
  readonly args: readonly Exclude<NativeType, "buffer">[];
  readonly returns: Exclude<NativeType, "buffer">;
}

/** The JavaScript arguments of a callback of type `D`: pointers as Ptr | null, 64-bit as bigint. */
export type CallbackArgs<D extends CallbackDef> = JsArgs<D["args"]>;

/** What the JavaScript function of a callback of type `D` returns. */
export type CallbackResult<D extends CallbackDef> = JsResult<D["returns"]>;

/**
 * A C function pointer backed by a JavaScript function (Deno.UnsafeCallback,
 * bun:ffi JSCallback). It may be called only on the JavaScript thread that
 * made it, synchronously (never thread-safe: a C caller on another thread
 * is not supported). The owner calls close() once no C code can call it any
 * more; a call after close() crashes the process.
 */
export interface NativeCallback {
  /** The function pointer to hand to C. */
  readonly pointer: Ptr;
  /** Frees the trampoline. Idempotent. */
  close(): void;
}

/** A loaded library: its typed symbols and the path it was loaded from. */
export interface LoadedLibrary<T extends SymbolTable> {
  readonly path: string;
  readonly symbols: Bound<T>;
}

/**
 * What each runtime adapter provides. Implementations: ffi/deno.ts,
 * ffi/bun.ts. Nothing outside those two files touches the runtime's FFI.
 */
export interface FfiRuntime {
  readonly name: "deno" | "bun";
  /**
   * Opens `path` (a soname or a full path) and binds `table`. Throws the
   * runtime's own loader error when the library or a required symbol is
   * missing; optional symbols that are missing come back as null.
   */
  open<T extends SymbolTable>(path: string, table: T): LoadedLibrary<T>;
  /** The numeric address of a pointer (0n for null). */
  address(pointer: Ptr | null): bigint;
  /** A pointer from a numeric address (null for 0n). */
  pointer(address: bigint): Ptr | null;
  /** The address of the first byte of a JavaScript buffer view. */
  addressOf(view: ArrayBufferView): bigint;
  /**
   * An ArrayBuffer aliasing `byteLength` bytes of foreign memory at
   * `pointer`, without copying. The caller detaches it (transfer(0)) before
   * the memory is released.
   */
  foreignBuffer(pointer: Ptr, byteLength: number): ArrayBuffer;
  /**
   * Runs `poll(2)` over `fds` (an array of struct pollfd) without blocking
   * the JavaScript thread: Deno uses a nonblocking FFI call, Bun a Worker
   * (one per concurrent call). Resolves with poll's return value; revents
   * are written into `fds`. The process stays alive while a call is in
   * flight, and only then.
   */
  pollAsync(fds: Uint8Array, count: number, timeoutMs: number): Promise<number>;
  /**
   * Makes a C function pointer of type `def` that runs `fn` synchronously on
   * the calling JavaScript thread, on top of the C caller's stack (Deno:
   * Deno.UnsafeCallback, not thread-safe and not keeping the process alive;
   * Bun: JSCallback without `threadsafe`). Arguments are normalised: pointers
   * are Ptr or null, i64/u64 are bigint, the rest numbers. `fn` must not
   * throw: an exception's effect on the C caller differs between runtimes
   * (Deno returns 0 to C), so every caller in ffi/ catches and returns an
   * error code itself. The caller owns the result and closes it.
   */
  callback<D extends CallbackDef>(
    def: D,
    fn: (...args: CallbackArgs<D>) => CallbackResult<D>,
  ): NativeCallback;
}
