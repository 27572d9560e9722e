/**
 * libxl (libxenlight) driven entirely through its osevent hooks
 * (tools/include/libxl_event.h): the application, not libxl, owns the file
 * descriptors and timeouts libxl needs, so no libxl call here ever runs
 * libxl's internal poll loop and the JavaScript event loop never blocks.
 *
 * What this file does, in the order libxl requires it:
 * 1. libxl_ctx_alloc with a xentoollog stdiostream logger writing to the
 *    sink the caller chose (discarded, stderr, a file, or a descriptor such
 *    as the write end of a pipe the caller reads);
 * 2. libxl_osevent_register_hooks at once (libxl asserts that nothing is
 *    registered yet), with six JavaScript callbacks that forward each fd and
 *    timeout registration to the caller's LibxlOsEventHooks;
 * 3. libxl_childproc_setmode(libxl_sigchld_owner_mainloop): libxl never
 *    installs a SIGCHLD handler (it would abort, finding the runtime's own),
 *    and this file tells it about SIGCHLD itself (see "Children" below);
 * 4. libxl_event_register_callbacks: events and disasters come back to the
 *    caller's onEvent / onDisaster.
 *
 * Rules kept here so that no caller can break them:
 * - Hooks run synchronously, on the JavaScript thread, inside whatever libxl
 *   call made them (libxl has no threads of its own). A hook that throws
 *   never reaches C as success: the callback returns ERROR_OSEVENT_REG_FAIL
 *   (-12), and the exception becomes the `cause` of the LibxlError that the
 *   libxl call then returns.
 * - occurredFd / occurredTimeout refuse (XenUsageError) while a hook runs:
 *   libxl would abort the process (assert(!CTX->osevent_in_hook)). The
 *   caller reports occurrences later, from its own loop.
 * - Events, disasters and operation completions are delivered to
 *   JavaScript after the libxl call that produced them has returned
 *   (queueMicrotask, or the promise machinery for operations), so user code
 *   never runs on top of libxl's stack. Each libxl_event is copied and
 *   released with libxl_event_free before that.
 * - Every asynchronous operation is given a libxl_asyncop_how with a
 *   callback (never NULL, which would block in libxl's own poll loop) and
 *   returns a Promise.
 *
 * Children: libxl forks only inside asynchronous operations (device hotplug
 * scripts, a device model to kill). While at least one operation is in
 * flight a SIGCHLD listener is installed with node:process (an ordinary
 * event-loop callback in both runtimes, never a signal handler), and each
 * SIGCHLD is passed on with libxl_childproc_sigchld_occurred, which reaps
 * only libxl's own children.
 *
 * Single-threaded; one LibxlContext per libxl_ctx. x86_64 only (the hook
 * and struct layouts are checked by tests/libxl_layout.test.ts against
 * gcc's view of /usr/include/libxl.h).
 *
 * @module
 */
import process from "node:process";
import { ClosedHandleError, XenError, XenUsageError } from "../core/errors.ts";
import { checkDomid } from "../core/validate.ts";
import { cString, loadXenLight, type XenLightLibrary } from "./load.ts";
import { LIBXL_CALLBACKS } from "./symbols.ts";
import type { CallbackArgs, CallbackResult, NativeCallback, Ptr } from "./types.ts";

/** libxl_error (_libxl_types.h): the codes libxl returns, negative. */
export const LIBXL_ERRORS: Readonly<Record<number, string>> = Object.freeze({
  [-1]: "ERROR_NONSPECIFIC",
  [-2]: "ERROR_VERSION",
  [-3]: "ERROR_FAIL",
  [-4]: "ERROR_NI",
  [-5]: "ERROR_NOMEM",
  [-6]: "ERROR_INVAL",
  [-7]: "ERROR_BADFAIL",
  [-8]: "ERROR_GUEST_TIMEDOUT",
  [-9]: "ERROR_TIMEDOUT",
  [-10]: "ERROR_NOPARAVIRT",
  [-11]: "ERROR_NOT_READY",
  [-12]: "ERROR_OSEVENT_REG_FAIL",
  [-13]: "ERROR_BUFFERFULL",
  [-14]: "ERROR_UNKNOWN_CHILD",
  [-15]: "ERROR_LOCK_FAIL",
  [-21]: "ERROR_DOMAIN_NOTFOUND",
  [-22]: "ERROR_ABORTED",
  [-23]: "ERROR_NOTFOUND",
  [-24]: "ERROR_DOMAIN_DESTROYED",
});

/** ERROR_OSEVENT_REG_FAIL: what a hook returns to libxl when it refuses. */
export const ERROR_OSEVENT_REG_FAIL = -12;
/** ERROR_DOMAIN_NOTFOUND: libxl_domain_info's answer for a missing domain. */
export const ERROR_DOMAIN_NOTFOUND = -21;

/** The name of a libxl error code ("ERROR_FAIL"), or "ERROR_<rc>" when unknown. Throws nothing. */
export function libxlErrorName(rc: number): string {
  return LIBXL_ERRORS[rc] ?? `ERROR_${rc}`;
}

/**
 * A libxl call failed. `call` is the C function, `rc` libxl's (negative)
 * error code and `code` its name ("ERROR_OSEVENT_REG_FAIL", ...). When the
 * failure came from one of the application's hooks refusing a registration,
 * `cause` is what the hook threw and `hook` names it.
 */
export class LibxlError extends XenError {
  override name = "LibxlError";
  readonly code: string;
  /** Builds the error; `code` is derived from `rc`. Throws nothing. */
  constructor(
    readonly call: string,
    readonly rc: number,
    readonly hook?: string,
    cause?: unknown,
  ) {
    const code = libxlErrorName(rc);
    const why = hook ? `: the ${hook} hook refused (${(cause as Error)?.message ?? cause})` : "";
    super(`${call} failed: ${code} (${rc})${why}`, cause === undefined ? undefined : { cause });
    this.code = code;
  }
}

/** Byte layouts on x86_64, as gcc sees /usr/include/libxl*.h (Xen 4.17). */
export const LIBXL_LAYOUT = Object.freeze({
  /** libxl_osevent_hooks: six function pointers. */
  oseventHooks: Object.freeze({
    size: 48,
    fdRegister: 0,
    fdModify: 8,
    fdDeregister: 16,
    timeoutRegister: 24,
    timeoutModify: 32,
    timeoutDeregister: 40,
  }),
  /** libxl_event. */
  event: Object.freeze({ size: 208, domid: 16, domuuid: 20, forUser: 40, type: 48, u: 56 }),
  /** libxl_event_hooks. */
  eventHooks: Object.freeze({ size: 24, eventOccursMask: 0, eventOccurs: 8, disaster: 16 }),
  /** libxl_asyncop_how. */
  asyncopHow: Object.freeze({ size: 16, callback: 0, u: 8 }),
  /** libxl_childproc_hooks. */
  childprocHooks: Object.freeze({ size: 24, chldowner: 0, forkReplacement: 8, reapedCallback: 16 }),
  /** libxl_dominfo (4.17). */
  dominfo: Object.freeze({
    size: 120,
    uuid: 0,
    domid: 16,
    ssidref: 20,
    running: 32,
    blocked: 33,
    paused: 34,
    shutdown: 35,
    dying: 36,
    neverStop: 37,
    shutdownReason: 40,
    outstandingMemkb: 48,
    currentMemkb: 56,
    sharedMemkb: 64,
    pagedMemkb: 72,
    maxMemkb: 80,
    cpuTime: 88,
    vcpuMaxId: 96,
    vcpuOnline: 100,
    cpupool: 104,
    domainType: 112,
  }),
});

/** libxl_event_type values (libxl_types.idl). */
export const LIBXL_EVENT_TYPE = Object.freeze({
  DOMAIN_SHUTDOWN: 1,
  DOMAIN_DEATH: 2,
  DISK_EJECT: 3,
  OPERATION_COMPLETE: 4,
  DOMAIN_CREATE_CONSOLE_AVAILABLE: 5,
});

/** libxl_sigchld_owner_mainloop (libxl_event.h). */
export const SIGCHLD_OWNER_MAINLOOP = 1;

/** libxl_domain_type names by value. */
const DOMAIN_TYPES: Readonly<Record<number, "hvm" | "pv" | "pvh">> = {
  1: "hvm",
  2: "pv",
  3: "pvh",
};

/**
 * The application's side of libxl_osevent_hooks, called synchronously from
 * inside libxl. `reg` identifies one registration (this file stores it as
 * libxl's for_app_registration); `forLibxl` is libxl's opaque value, to be
 * passed back to occurredFd / occurredTimeout. A register or modify hook
 * refuses by throwing (libxl then gets ERROR_OSEVENT_REG_FAIL and nothing is
 * registered or changed). Hooks must not call occurredFd / occurredTimeout
 * (XenUsageError); they should only record and arrange a later report.
 */
export interface LibxlOsEventHooks {
  /** Watch `fd` for poll(2) `events` (0 allowed: register, report nothing). */
  fdRegister(reg: number, fd: number, events: number, forLibxl: bigint): void;
  /** Watch other `events` on the registration. */
  fdModify(reg: number, fd: number, events: number): void;
  /** Stop watching; `reg` is dead afterwards. Exceptions are reported, not returned. */
  fdDeregister(reg: number, fd: number): void;
  /**
   * Call occurredTimeout(forLibxl) once Date.now() reaches `deadline` (ms
   * since the epoch, from libxl's struct timeval; it may be in the past).
   */
  timeoutRegister(reg: number, deadline: number, forLibxl: bigint): void;
  /** libxl only ever asks for "as soon as possible" (abs = {0,0}). */
  timeoutModify(reg: number): void;
}

/** One libxl event, copied out of libxl's memory (which is already freed). */
export interface LibxlEvent {
  /** A LIBXL_EVENT_TYPE value. */
  readonly type: number;
  readonly domid: number;
  /** The domain's UUID (lower-case 8-4-4-4-12). */
  readonly domuuid: string;
  /** The libxl_ev_user given when the event was enabled. */
  readonly forUser: bigint;
  /** DOMAIN_SHUTDOWN only: the SHUTDOWN_* code (0 poweroff, 1 reboot, 2 suspend, 3 crash, 4 watchdog, 5 soft_reset). */
  readonly shutdownReason?: number;
}

/** One domain as libxl_list_domain / libxl_domain_info report it (memory in KiB). */
export interface LibxlDomainInfo {
  readonly domid: number;
  readonly uuid: string;
  readonly running: boolean;
  readonly blocked: boolean;
  readonly paused: boolean;
  readonly shutdown: boolean;
  readonly dying: boolean;
  /** SHUTDOWN_* code when shutdown, else undefined. */
  readonly shutdownReason?: number;
  readonly currentMemkb: bigint;
  readonly maxMemkb: bigint;
  /** Total vCPU time in nanoseconds. */
  readonly cpuTimeNs: bigint;
  readonly onlineVcpus: number;
  readonly cpupool: number;
  readonly type: "hvm" | "pv" | "pvh" | "unknown";
}

/**
 * Where libxl's log messages go: "discard" (default), "stderr", a file
 * (appended to), or a descriptor the caller owns (it is dup'ed; pass the
 * write end of a pipe to read the messages). Lines are flushed as written.
 */
export type LibxlLogSink = "discard" | "stderr" | { readonly file: string } | {
  readonly fd: number;
};

/** xentoollog_level names, lowest first. */
export const LIBXL_LOG_LEVELS = [
  "debug",
  "verbose",
  "detail",
  "progress",
  "info",
  "notice",
  "warn",
  "error",
  "critical",
] as const;

/** One of LIBXL_LOG_LEVELS. */
export type LibxlLogLevel = (typeof LIBXL_LOG_LEVELS)[number];

/** Options of openLibxl. */
export interface LibxlOptions {
  /** The fd and timeout hooks (required: this binding never lets libxl poll by itself). */
  readonly hooks: LibxlOsEventHooks;
  /** Receives every event (after the libxl call that produced it has returned). */
  readonly onEvent?: (event: LibxlEvent) => void;
  /**
   * Receives libxl's disasters (type: the event type that may be missing, 0
   * any; errno: 0 if none), after the libxl call has returned. Without it a
   * disaster is only counted (libxl would exit(-1) if given no handler).
   */
  readonly onDisaster?: (type: number, message: string, errno: number) => void;
  /** Receives exceptions thrown by hooks (they are also returned as LibxlError causes). */
  readonly onHookError?: (hook: string, error: unknown) => void;
  /** Where log messages go (default "discard"). */
  readonly log?: LibxlLogSink;
  /** The lowest level logged (default "warn"). */
  readonly logLevel?: LibxlLogLevel;
}

/** Counts for tests and leak checks. */
export interface LibxlStats {
  /** fd registrations libxl holds now. */
  readonly fds: number;
  /** Timeout registrations libxl holds now (until occurredTimeout). */
  readonly timeouts: number;
  /** Enabled domain death generators. */
  readonly deathWatches: number;
  /** Asynchronous operations in flight. */
  readonly operations: number;
  /** Disasters libxl reported. */
  readonly disasters: number;
  /** Hooks that threw. */
  readonly hookErrors: number;
  /** Whether a SIGCHLD listener is installed. */
  readonly sigchldListener: boolean;
}

/** An enabled libxl_evgen_domain_death. */
export interface LibxlDeathWatch {
  readonly domid: number;
  readonly forUser: bigint;
  /** False once disabled (or the context closed). */
  readonly enabled: boolean;
}

interface DeathRec extends LibxlDeathWatch {
  enabled: boolean;
  readonly evgen: Ptr;
}

interface Operation {
  readonly call: string;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

const XTL_STDIOSTREAM_HIDE_PROGRESS = 0o4;
const IOLBF = 1; // _IOLBF (glibc)

/** See the module comment. Made by openLibxl. */
export class LibxlContext implements Disposable {
  readonly #libs: XenLightLibrary;
  readonly #options: LibxlOptions;
  readonly #callbacks: NativeCallback[] = [];
  readonly #memory: Ptr[] = [];
  readonly #regs = new Map<number, "fd" | "timeout">();
  /** forLibxl of each registered timeout -> its registration. */
  readonly #timeoutRegs = new Map<bigint, number>();
  readonly #deaths = new Set<DeathRec>();
  readonly #operations = new Map<number, Operation>();
  readonly #aoCallback: NativeCallback;
  #ctx: Ptr | null = null;
  #logger: Ptr | null = null;
  #logFile: Ptr | null = null;
  #nextReg = 0;
  #nextOperation = 0;
  #hookDepth = 0;
  #callDepth = 0;
  #closing = false;
  #disasters = 0;
  #hookErrors = 0;
  #lastRefusal: { readonly hook: string; readonly error: unknown } | null = null;
  #sigchld: (() => void) | null = null;
  readonly #freed = Promise.withResolvers<void>();

  /**
   * Allocates the context and registers the hooks, the SIGCHLD mode and the
   * event callbacks (see the module comment). Throws XenUsageError for bad
   * options or on a CPU other than x86_64, XenError when the log sink
   * cannot be opened, LibxlError("libxl_ctx_alloc") when libxl refuses
   * (ERROR_FAIL off Xen or without root: it opens /dev/xen/privcmd and
   * XenStore). Nothing is left allocated after a failure.
   */
  constructor(libs: XenLightLibrary, options: LibxlOptions) {
    if (process.arch !== "x64") {
      throw new XenUsageError(`the libxl binding is x86_64 only, this is ${process.arch}`);
    }
    checkHooks(options?.hooks);
    this.#libs = libs;
    this.#options = options;
    this.#aoCallback = this.#cb("ao_complete", (_ctx, rc, id) => this.#aoDone(rc, id));
    try {
      this.#openLogger(options.log ?? "discard", options.logLevel ?? "warn");
      const out = new BigUint64Array(1);
      const rc = libs.xenlight.symbols.libxl_ctx_alloc(out, 0, 0, this.#logger);
      if (rc !== 0 || out[0] === 0n) throw new LibxlError("libxl_ctx_alloc", rc || -3);
      this.#ctx = libs.runtime.pointer(out[0]);
      this.#registerHooks();
    } catch (error) {
      this.#release();
      throw error;
    }
  }

  /** The library file libxl was loaded from. */
  get libraryPath(): string {
    return this.#libs.xenlight.path;
  }

  /** Whether close() has run (the context may still be waiting for operations to end). */
  get closed(): boolean {
    return this.#closing || this.#ctx === null;
  }

  /** True while one of the osevent hooks runs. */
  get inHook(): boolean {
    return this.#hookDepth > 0;
  }

  /** Counts (see LibxlStats). Throws nothing. */
  stats(): LibxlStats {
    let fds = 0;
    for (const kind of this.#regs.values()) if (kind === "fd") fds++;
    return {
      fds,
      timeouts: this.#regs.size - fds,
      deathWatches: this.#deaths.size,
      operations: this.#operations.size,
      disasters: this.#disasters,
      hookErrors: this.#hookErrors,
      sigchldListener: this.#sigchld !== null,
    };
  }

  // ---- reporting occurrences (from the application's loop) -----------------------

  /**
   * libxl_osevent_occurred_fd: `fd` of the registration whose forLibxl is
   * given became ready (libxl polls it again itself, so revents are only a
   * hint). Throws XenUsageError when called from inside a hook (libxl would
   * abort) or for a bad fd; ignored after close(). libxl may call hooks,
   * deliver events and complete operations from inside it.
   */
  occurredFd(forLibxl: bigint, fd: number, events: number, revents: number): void {
    this.#checkNotInHook("occurredFd");
    if (!Number.isInteger(fd) || fd < 0) {
      throw new XenUsageError(`fd must be a non-negative integer, got ${String(fd)}`);
    }
    const ctx = this.#ctx;
    if (ctx === null) return;
    const lib = this.#pointerArg("forLibxl", forLibxl);
    this.#call(() =>
      this.#libs.xenlight.symbols.libxl_osevent_occurred_fd(
        ctx,
        lib,
        fd,
        toShort(events),
        toShort(revents),
      )
    );
  }

  /**
   * libxl_osevent_occurred_timeout: the timeout whose forLibxl is given fell
   * due (or was modified to fire now). Its registration ends here. Throws
   * XenUsageError from inside a hook; ignored after close().
   */
  occurredTimeout(forLibxl: bigint): void {
    this.#checkNotInHook("occurredTimeout");
    const ctx = this.#ctx;
    if (ctx === null) return;
    const lib = this.#pointerArg("forLibxl", forLibxl);
    const reg = this.#timeoutRegs.get(forLibxl);
    if (reg !== undefined) {
      this.#timeoutRegs.delete(forLibxl);
      this.#regs.delete(reg);
    }
    this.#call(() => this.#libs.xenlight.symbols.libxl_osevent_occurred_timeout(ctx, lib));
  }

  /**
   * libxl_childproc_sigchld_occurred: tells libxl that SIGCHLD happened, so
   * it reaps whichever of its own children exited (and nothing else). Done
   * automatically while operations are in flight; for applications that
   * listen for SIGCHLD themselves. Throws XenUsageError from inside a hook;
   * ignored after close().
   */
  sigchldOccurred(): void {
    this.#checkNotInHook("sigchldOccurred");
    const ctx = this.#ctx;
    if (ctx === null) return;
    this.#call(() => this.#libs.xenlight.symbols.libxl_childproc_sigchld_occurred(ctx));
  }

  /**
   * libxl_childproc_reaped: the application reaped `pid` with wait `status`.
   * Returns true when it was libxl's child (libxl has processed it), false
   * for ERROR_UNKNOWN_CHILD. Throws XenUsageError from a hook or for a bad
   * pid, ClosedHandleError after close().
   */
  childReaped(pid: number, status: number): boolean {
    this.#checkNotInHook("childReaped");
    if (!Number.isInteger(pid) || pid <= 0) {
      throw new XenUsageError(`pid must be a positive integer, got ${String(pid)}`);
    }
    const ctx = this.#live();
    return this.#call(() =>
      this.#libs.xenlight.symbols.libxl_childproc_reaped(ctx, pid, status | 0)
    ) === 0;
  }

  // ---- events ----------------------------------------------------------------------

  /**
   * libxl_evenable_domain_death: libxl generates DOMAIN_SHUTDOWN (once per
   * shutdown, with the reason) and DOMAIN_DEATH for `domid`, each carrying
   * `forUser`, through onEvent. Returns the watch (keep it to disable).
   * Throws XenUsageError for a bad domid or from a hook, ClosedHandleError,
   * LibxlError (ERROR_OSEVENT_REG_FAIL with the hook's exception as cause
   * when a hook refused the XenStore watch's fd or a timeout).
   */
  enableDomainDeath(domid: number, forUser = 0n): LibxlDeathWatch {
    this.#checkNotInHook("enableDomainDeath");
    checkDomid(domid);
    if (typeof forUser !== "bigint" || forUser < 0n || forUser >= 1n << 64n) {
      throw new XenUsageError(`forUser must be a u64 bigint, got ${String(forUser)}`);
    }
    const ctx = this.#live();
    const out = new BigUint64Array(1);
    this.#lastRefusal = null;
    const rc = this.#call(() =>
      this.#libs.xenlight.symbols.libxl_evenable_domain_death(ctx, domid, forUser, out)
    );
    if (rc !== 0) throw this.#error("libxl_evenable_domain_death", rc);
    const evgen = this.#libs.runtime.pointer(out[0])!;
    const rec: DeathRec = { domid, forUser, enabled: true, evgen };
    this.#deaths.add(rec);
    return rec;
  }

  /**
   * libxl_evdisable_domain_death. Events already generated may still come.
   * Idempotent; a no-op after close(). Throws XenUsageError for a watch of
   * another context or from a hook.
   */
  disableDomainDeath(watch: LibxlDeathWatch): void {
    this.#checkNotInHook("disableDomainDeath");
    const rec = watch as DeathRec;
    if (!this.#deaths.has(rec)) {
      if (rec?.enabled === false || this.#ctx === null) return;
      throw new XenUsageError("not a domain death watch of this libxl context");
    }
    this.#deaths.delete(rec);
    rec.enabled = false;
    const ctx = this.#ctx;
    if (ctx === null) return;
    this.#call(() => this.#libs.xenlight.symbols.libxl_evdisable_domain_death(ctx, rec.evgen));
  }

  // ---- domain information (synchronous: no libxl poll loop involved) -------------

  /**
   * libxl_list_domain: every domain, ascending by domid. Synchronous (one
   * hypercall batch; libxl runs no event loop for it). The list is freed
   * with libxl_dominfo_list_free before returning. Throws ClosedHandleError,
   * XenUsageError from a hook or for a libxl whose libxl_dominfo layout is
   * not the verified 4.17 one, LibxlError("libxl_list_domain") when it fails.
   */
  listDomains(): LibxlDomainInfo[] {
    this.#checkNotInHook("listDomains");
    this.#checkDominfoLayout();
    const ctx = this.#live();
    const count = new Int32Array(1);
    const sym = this.#libs.xenlight.symbols;
    const list = this.#call(() => sym.libxl_list_domain(ctx, count));
    if (list === null) throw new LibxlError("libxl_list_domain", -3);
    try {
      if (count[0] <= 0) return [];
      const size = LIBXL_LAYOUT.dominfo.size;
      const bytes = new Uint8Array(this.#libs.runtime.foreignBuffer(list, size * count[0])).slice();
      return Array.from({ length: count[0] }, (_, i) => parseLibxlDominfo(bytes, i * size));
    } finally {
      sym.libxl_dominfo_list_free(list, count[0]);
    }
  }

  /**
   * libxl_domain_info: one domain, or undefined when it does not exist
   * (ERROR_DOMAIN_NOTFOUND). Synchronous like listDomains. Throws
   * XenUsageError (bad domid, from a hook), ClosedHandleError, LibxlError.
   */
  domainInfo(domid: number): LibxlDomainInfo | undefined {
    this.#checkNotInHook("domainInfo");
    this.#checkDominfoLayout();
    checkDomid(domid);
    const ctx = this.#live();
    const sym = this.#libs.xenlight.symbols;
    const info = new Uint8Array(LIBXL_LAYOUT.dominfo.size);
    sym.libxl_dominfo_init(info);
    try {
      const rc = this.#call(() => sym.libxl_domain_info(ctx, info, domid));
      if (rc === ERROR_DOMAIN_NOTFOUND) return undefined;
      if (rc !== 0) throw new LibxlError("libxl_domain_info", rc);
      return parseLibxlDominfo(info, 0);
    } finally {
      sym.libxl_dominfo_dispose(info);
    }
  }

  /**
   * libxl_domid_to_name: the domain's name from XenStore, or undefined when
   * it has none. Synchronous (one XenStore read). Throws XenUsageError (bad
   * domid, from a hook), ClosedHandleError.
   */
  domainName(domid: number): string | undefined {
    this.#checkNotInHook("domainName");
    checkDomid(domid);
    const ctx = this.#live();
    const name = this.#call(() => this.#libs.xenlight.symbols.libxl_domid_to_name(ctx, domid));
    if (name === null) return undefined;
    try {
      return this.#cStringAt(name);
    } finally {
      this.#libs.libc.symbols.free(name);
    }
  }

  // ---- asynchronous operations -------------------------------------------------------

  /** libxl_domain_pause as a Promise; see #operation for its errors. */
  pause(domid: number): Promise<void> {
    return this.#operation("libxl_domain_pause", domid);
  }

  /** libxl_domain_unpause as a Promise. */
  unpause(domid: number): Promise<void> {
    return this.#operation("libxl_domain_unpause", domid);
  }

  /**
   * libxl_domain_shutdown as a Promise: asks the guest to power off
   * (control/shutdown = "poweroff"); resolves when the request is written,
   * not when the guest has shut down (watch DOMAIN_SHUTDOWN for that).
   * Rejects with LibxlError (ERROR_NOPARAVIRT for an HVM guest without PV
   * drivers).
   */
  shutdown(domid: number): Promise<void> {
    return this.#operation("libxl_domain_shutdown", domid);
  }

  /** libxl_domain_reboot as a Promise (like shutdown, asking for a reboot). */
  reboot(domid: number): Promise<void> {
    return this.#operation("libxl_domain_reboot", domid);
  }

  /**
   * libxl_domain_destroy as a Promise: resolves once libxl has destroyed the
   * domain and cleaned its XenStore and devices up.
   */
  destroy(domid: number): Promise<void> {
    return this.#operation("libxl_domain_destroy", domid);
  }

  // ---- lifetime ----------------------------------------------------------------------

  /**
   * Disables every death watch and frees the context (libxl_ctx_free, which
   * deregisters libxl's fds through the hooks), then the logger, the hook
   * tables and the callbacks. With operations in flight the free waits until
   * the last one completes (they keep being served by the hooks); new calls
   * are refused at once with ClosedHandleError. Idempotent. Called from
   * inside a hook or an event delivery, the free is deferred to a microtask
   * (libxl must not be freed under its own stack). Throws nothing.
   */
  close(): void {
    if (this.#closing || this.#ctx === null) return;
    this.#closing = true;
    this.#maybeFree();
  }

  /** Calls close() (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Resolves once libxl_ctx_free has run and everything is released (after
   * close(), and after the last operation in flight, if any). Never rejects.
   */
  whenClosed(): Promise<void> {
    return this.#freed.promise;
  }

  // ---- internals ------------------------------------------------------------------------

  #maybeFree(): void {
    if (!this.#closing || this.#ctx === null || this.#operations.size > 0) return;
    if (this.#callDepth > 0 || this.#hookDepth > 0) {
      queueMicrotask(() => this.#maybeFree());
      return;
    }
    const ctx = this.#ctx;
    const sym = this.#libs.xenlight.symbols;
    for (const rec of this.#deaths) {
      rec.enabled = false;
      this.#call(() => sym.libxl_evdisable_domain_death(ctx, rec.evgen));
    }
    this.#deaths.clear();
    this.#call(() => sym.libxl_ctx_free(ctx));
    this.#ctx = null;
    this.#release();
    this.#freed.resolve();
  }

  /** Frees everything but the ctx (already freed or never made). */
  #release(): void {
    this.#setSigchldListener(false);
    this.#regs.clear();
    this.#timeoutRegs.clear();
    const { toollog, libc } = this.#libs;
    if (this.#logger !== null) toollog.symbols.xtl_logger_destroy(this.#logger);
    this.#logger = null;
    if (this.#logFile !== null) libc.symbols.fclose(this.#logFile);
    this.#logFile = null;
    for (const p of this.#memory) libc.symbols.free(p);
    this.#memory.length = 0;
    for (const cb of this.#callbacks) cb.close();
    this.#callbacks.length = 0;
  }

  #live(): Ptr {
    if (this.#closing || this.#ctx === null) throw new ClosedHandleError("libxl context");
    return this.#ctx;
  }

  #checkNotInHook(what: string): void {
    if (this.#hookDepth > 0) {
      throw new XenUsageError(
        `${what} was called from inside a libxl osevent hook, which libxl forbids (it would abort); report it later from the loop`,
      );
    }
  }

  #checkDominfoLayout(): void {
    const m = /libxenlight\.so\.4\.(\d+)/.exec(this.#libs.xenlight.path);
    if (m && m[1] !== "17") {
      throw new XenUsageError(
        `the libxl_dominfo layout is verified for libxenlight 4.17 only, not ${this.#libs.xenlight.path}`,
      );
    }
  }

  #pointerArg(what: string, value: bigint): Ptr {
    if (typeof value !== "bigint" || value <= 0n) {
      throw new XenUsageError(
        `${what} must be libxl's non-null pointer value, got ${String(value)}`,
      );
    }
    return this.#libs.runtime.pointer(value)!;
  }

  /** Runs a libxl call, tracking that libxl is on the stack. */
  #call<T>(fn: () => T): T {
    this.#callDepth++;
    try {
      return fn();
    } finally {
      this.#callDepth--;
    }
  }

  #error(call: string, rc: number): LibxlError {
    const refusal = this.#lastRefusal;
    this.#lastRefusal = null;
    if (rc === ERROR_OSEVENT_REG_FAIL && refusal) {
      return new LibxlError(call, rc, refusal.hook, refusal.error);
    }
    return new LibxlError(call, rc);
  }

  #alloc(size: number): Ptr {
    const p = this.#libs.libc.symbols.calloc(1n, BigInt(size));
    if (p === null) throw new XenError(`calloc(${size}) failed`);
    this.#memory.push(p);
    return p;
  }

  #words(p: Ptr, size: number): BigUint64Array {
    return new BigUint64Array(this.#libs.runtime.foreignBuffer(p, size));
  }

  #cb<K extends keyof typeof LIBXL_CALLBACKS>(
    name: K,
    fn: (
      ...args: CallbackArgs<(typeof LIBXL_CALLBACKS)[K]>
    ) => CallbackResult<(typeof LIBXL_CALLBACKS)[K]>,
  ): NativeCallback {
    const cb = this.#libs.runtime.callback(LIBXL_CALLBACKS[name], fn);
    this.#callbacks.push(cb);
    return cb;
  }

  #openLogger(sink: LibxlLogSink, level: LibxlLogLevel): void {
    const levelNumber = LIBXL_LOG_LEVELS.indexOf(level) + 1;
    if (levelNumber === 0) {
      throw new XenUsageError(
        `logLevel must be one of ${LIBXL_LOG_LEVELS.join(", ")}, got ${String(level)}`,
      );
    }
    const { libc, toollog } = this.#libs;
    let file: Ptr | null;
    let what: string;
    if (sink === "discard") {
      what = "/dev/null";
      file = libc.symbols.fopen(cString("/dev/null"), cString("w"));
    } else if (sink === "stderr" || (typeof sink === "object" && "fd" in sink)) {
      const fd = sink === "stderr" ? 2 : sink.fd;
      if (!Number.isInteger(fd) || fd < 0) {
        throw new XenUsageError(`log.fd must be a non-negative integer, got ${String(fd)}`);
      }
      what = `fd ${fd}`;
      const copy = libc.symbols.dup(fd);
      if (copy < 0) {
        throw new XenError(`cannot dup the log descriptor ${fd} (errno ${this.#libs.errno()})`);
      }
      file = libc.symbols.fdopen(copy, cString("w"));
      if (file === null) libc.symbols.close(copy);
    } else if (typeof sink === "object" && typeof sink.file === "string" && sink.file !== "") {
      what = sink.file;
      file = libc.symbols.fopen(cString(sink.file), cString("a"));
    } else {
      throw new XenUsageError(
        `log must be "discard", "stderr", { file } or { fd }, got ${JSON.stringify(sink)}`,
      );
    }
    if (file === null) {
      throw new XenError(`cannot open the libxl log sink ${what} (errno ${this.#libs.errno()})`);
    }
    this.#logFile = file;
    libc.symbols.setvbuf(file, null, IOLBF, 0n);
    const logger = toollog.symbols.xtl_createlogger_stdiostream(
      file,
      levelNumber,
      XTL_STDIOSTREAM_HIDE_PROGRESS,
    );
    if (logger === null) throw new XenError("xtl_createlogger_stdiostream failed");
    this.#logger = logger;
  }

  #registerHooks(): void {
    const ctx = this.#ctx!;
    const runtime = this.#libs.runtime;
    const sym = this.#libs.xenlight.symbols;
    const hooks = this.#options.hooks;
    const L = LIBXL_LAYOUT;

    const fdRegister = this.#cb(
      "fd_register",
      (_u, fd, out, events, lib) =>
        this.#hook("fdRegister", () => {
          const reg = ++this.#nextReg;
          hooks.fdRegister(reg, fd, events & 0xffff, runtime.address(lib));
          this.#words(out!, 8)[0] = BigInt(reg);
          this.#regs.set(reg, "fd");
        }),
    );
    const fdModify = this.#cb("fd_modify", (_u, fd, io, events) =>
      this.#hook("fdModify", () => {
        hooks.fdModify(Number(this.#words(io!, 8)[0]), fd, events & 0xffff);
      }));
    const fdDeregister = this.#cb("fd_deregister", (_u, fd, regPtr) => {
      const reg = Number(runtime.address(regPtr));
      this.#regs.delete(reg);
      this.#hook("fdDeregister", () => hooks.fdDeregister(reg, fd));
    });
    const timeoutRegister = this.#cb(
      "timeout_register",
      (_u, out, sec, usec, lib) =>
        this.#hook("timeoutRegister", () => {
          const reg = ++this.#nextReg;
          const deadline = Number(sec) * 1000 + Number(usec) / 1000;
          const forLibxl = runtime.address(lib);
          hooks.timeoutRegister(reg, deadline, forLibxl);
          this.#words(out!, 8)[0] = BigInt(reg);
          this.#regs.set(reg, "timeout");
          this.#timeoutRegs.set(forLibxl, reg);
        }),
    );
    const timeoutModify = this.#cb(
      "timeout_modify",
      (_u, io) =>
        this.#hook("timeoutModify", () => hooks.timeoutModify(Number(this.#words(io!, 8)[0]))),
    );
    // libxl 4.17 never calls timeout_deregister (libxl_event.h:293); it is a no-op here.
    const timeoutDeregister = this.#cb("timeout_deregister", () => {});

    const table = this.#alloc(L.oseventHooks.size);
    const words = this.#words(table, L.oseventHooks.size);
    const fns = [
      fdRegister,
      fdModify,
      fdDeregister,
      timeoutRegister,
      timeoutModify,
      timeoutDeregister,
    ];
    fns.forEach((cb, i) => (words[i] = runtime.address(cb.pointer)));
    // Must come first: libxl asserts that nothing is registered yet.
    sym.libxl_osevent_register_hooks(ctx, table, null);

    const child = this.#alloc(L.childprocHooks.size);
    new Int32Array(runtime.foreignBuffer(child, 4))[0] = SIGCHLD_OWNER_MAINLOOP;
    sym.libxl_childproc_setmode(ctx, child, null);

    const eventOccurs = this.#cb("event_occurs", (_u, ev) => this.#eventOccurs(ev!));
    const disaster = this.#cb(
      "disaster",
      (_u, type, msg, errno) => this.#disaster(type, msg, errno),
    );
    const eventHooks = this.#alloc(L.eventHooks.size);
    const ew = this.#words(eventHooks, L.eventHooks.size);
    ew[0] = 0xffffffffffffffffn; // event_occurs_mask: every type goes to event_occurs
    ew[1] = runtime.address(eventOccurs.pointer);
    ew[2] = runtime.address(disaster.pointer);
    sym.libxl_event_register_callbacks(ctx, eventHooks, null);
  }

  /** Runs one hook body: 0 on success, ERROR_OSEVENT_REG_FAIL (never 0) when it throws. */
  #hook(name: string, body: () => void): number {
    this.#hookDepth++;
    try {
      body();
      return 0;
    } catch (error) {
      this.#hookErrors++;
      this.#lastRefusal = { hook: name, error };
      try {
        this.#options.onHookError?.(name, error);
      } catch { /* a reporting callback must not turn a refusal into success */ }
      return ERROR_OSEVENT_REG_FAIL;
    } finally {
      this.#hookDepth--;
    }
  }

  #eventOccurs(ev: Ptr): void {
    try {
      const L = LIBXL_LAYOUT.event;
      const bytes = new Uint8Array(this.#libs.runtime.foreignBuffer(ev, L.size)).slice();
      const ctx = this.#ctx;
      if (ctx !== null) this.#libs.xenlight.symbols.libxl_event_free(ctx, ev);
      const event = parseLibxlEvent(bytes);
      const onEvent = this.#options.onEvent;
      if (onEvent) queueMicrotask(() => onEvent(event));
    } catch (error) {
      reportLater(error);
    }
  }

  #disaster(type: number, msg: Ptr | null, errno: number): void {
    try {
      this.#disasters++;
      const message = msg === null ? "" : this.#cStringAt(msg);
      const onDisaster = this.#options.onDisaster;
      if (onDisaster) queueMicrotask(() => onDisaster(type, message, errno));
    } catch (error) {
      reportLater(error);
    }
  }

  #cStringAt(p: Ptr): string {
    const length = Number(this.#libs.libc.symbols.strlen(p));
    if (length === 0) return "";
    const bytes = new Uint8Array(this.#libs.runtime.foreignBuffer(p, length)).slice();
    return new TextDecoder().decode(bytes);
  }

  #operation(
    call:
      | "libxl_domain_pause"
      | "libxl_domain_unpause"
      | "libxl_domain_shutdown"
      | "libxl_domain_reboot"
      | "libxl_domain_destroy",
    domid: number,
  ): Promise<void> {
    try {
      this.#checkNotInHook(call);
      checkDomid(domid);
      const ctx = this.#live();
      const id = ++this.#nextOperation;
      const how = new Uint8Array(LIBXL_LAYOUT.asyncopHow.size);
      const dv = new DataView(how.buffer);
      dv.setBigUint64(
        LIBXL_LAYOUT.asyncopHow.callback,
        this.#libs.runtime.address(this.#aoCallback.pointer),
        true,
      );
      dv.setBigUint64(LIBXL_LAYOUT.asyncopHow.u, BigInt(id), true);
      return new Promise<void>((resolve, reject) => {
        this.#operations.set(id, { call, resolve, reject });
        this.#setSigchldListener(true);
        this.#lastRefusal = null;
        let rc: number;
        try {
          rc = this.#call(() => this.#libs.xenlight.symbols[call](ctx, domid, how));
        } catch (error) {
          this.#operations.delete(id);
          this.#afterOperation();
          reject(error);
          return;
        }
        // On failure to start, libxl makes no callback.
        if (rc !== 0 && this.#operations.delete(id)) {
          this.#afterOperation();
          reject(this.#error(call, rc));
        }
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #aoDone(rc: number, idPtr: Ptr | null): void {
    try {
      const id = Number(this.#libs.runtime.address(idPtr));
      const op = this.#operations.get(id);
      if (!op) return;
      this.#operations.delete(id);
      if (rc === 0) op.resolve();
      else op.reject(this.#error(op.call, rc));
      this.#afterOperation();
    } catch (error) {
      reportLater(error);
    }
  }

  #afterOperation(): void {
    if (this.#operations.size > 0) return;
    this.#setSigchldListener(false);
    if (this.#closing) queueMicrotask(() => this.#maybeFree());
  }

  #setSigchldListener(on: boolean): void {
    if (on && this.#sigchld === null) {
      const listener = () => {
        // An event-loop callback, not a signal handler: safe to call libxl.
        if (this.#ctx !== null && this.#hookDepth === 0) this.sigchldOccurred();
      };
      try {
        process.on("SIGCHLD", listener);
        this.#sigchld = listener;
      } catch {
        /* no signal support: libxl's children are reaped when sigchldOccurred is called */
      }
    } else if (!on && this.#sigchld !== null) {
      process.off("SIGCHLD", this.#sigchld);
      this.#sigchld = null;
    }
  }
}

function checkHooks(hooks: LibxlOsEventHooks | undefined): void {
  const names = ["fdRegister", "fdModify", "fdDeregister", "timeoutRegister", "timeoutModify"];
  for (const name of names) {
    if (typeof (hooks as unknown as Record<string, unknown> | undefined)?.[name] !== "function") {
      throw new XenUsageError(`hooks.${name} must be a function`);
    }
  }
}

function toShort(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new XenUsageError(`poll events must be a 16-bit integer, got ${String(value)}`);
  }
  return value > 0x7fff ? value - 0x10000 : value;
}

function uuidString(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20, 32)
  }`;
}

/**
 * Decodes a libxl_event (208 bytes, x86_64). Throws XenUsageError when
 * `bytes` is shorter. Pure.
 */
export function parseLibxlEvent(bytes: Uint8Array): LibxlEvent {
  const L = LIBXL_LAYOUT.event;
  if (bytes.byteLength < L.size) {
    throw new XenUsageError(`a libxl_event needs ${L.size} bytes, got ${bytes.byteLength}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, L.size);
  const type = dv.getInt32(L.type, true);
  const event: LibxlEvent = {
    type,
    domid: dv.getUint32(L.domid, true),
    domuuid: uuidString(bytes.subarray(L.domuuid, L.domuuid + 16)),
    forUser: dv.getBigUint64(L.forUser, true),
  };
  if (type !== LIBXL_EVENT_TYPE.DOMAIN_SHUTDOWN) return event;
  return { ...event, shutdownReason: dv.getUint8(L.u) };
}

/**
 * Decodes the libxl_dominfo (4.17 layout, 120 bytes) at `offset`. Throws
 * XenUsageError when fewer than 120 bytes remain. Pure.
 */
export function parseLibxlDominfo(bytes: Uint8Array, offset = 0): LibxlDomainInfo {
  const L = LIBXL_LAYOUT.dominfo;
  if (!Number.isInteger(offset) || offset < 0 || offset + L.size > bytes.byteLength) {
    throw new XenUsageError(
      `offset must leave ${L.size} bytes of a ${bytes.byteLength}-byte buffer, got ${offset}`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, L.size);
  const flag = (at: number) => dv.getUint8(at) !== 0;
  const shutdown = flag(L.shutdown);
  const info: LibxlDomainInfo = {
    domid: dv.getUint32(L.domid, true),
    uuid: uuidString(bytes.subarray(offset + L.uuid, offset + L.uuid + 16)),
    running: flag(L.running),
    blocked: flag(L.blocked),
    paused: flag(L.paused),
    shutdown,
    dying: flag(L.dying),
    currentMemkb: dv.getBigUint64(L.currentMemkb, true),
    maxMemkb: dv.getBigUint64(L.maxMemkb, true),
    cpuTimeNs: dv.getBigUint64(L.cpuTime, true),
    onlineVcpus: dv.getUint32(L.vcpuOnline, true),
    cpupool: dv.getUint32(L.cpupool, true),
    type: DOMAIN_TYPES[dv.getInt32(L.domainType, true)] ?? "unknown",
  };
  if (!shutdown) return info;
  return { ...info, shutdownReason: dv.getInt32(L.shutdownReason, true) };
}

function reportLater(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else {
    queueMicrotask(() => {
      throw error;
    });
  }
}

/**
 * Loads libxenlight (by version: libxenlight.so.4.17 ... or
 * $XENCHAN_LIBXENLIGHT) and opens a LibxlContext with `options` (see the
 * constructor for what happens and what it throws). Rejects with
 * LibraryNotFoundError naming the Debian package (libxenmisc4.17) when the
 * library is missing. The caller owns the context: close() or `using`.
 */
export async function openLibxl(options: LibxlOptions): Promise<LibxlContext> {
  return new LibxlContext(await loadXenLight(), options);
}
