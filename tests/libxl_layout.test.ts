/**
 * The libxl binding against gcc's view of /usr/include/libxl.h and
 * libxl_event.h (libxen-dev): every struct size and offset in
 * ffi/libxl.ts LIBXL_LAYOUT and the constants it uses
 * (tests/fixtures/libxl_layout.c), and every prototype of the LIBXL symbol
 * table and the LIBXL_CALLBACKS function pointer types, checked by compiling
 * a call with exactly the declared argument and result types under
 * -Werror -Wconversion -Wsign-conversion (a wrong arity, a narrowing or a
 * pointer/integer mix fails to build). `struct timeval abs` is declared as
 * two i64 arguments; the test builds it from those two and checks both
 * members are 8 bytes.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { requireCToolchain } from "./helpers/toolchain.ts";
import {
  ERROR_DOMAIN_NOTFOUND,
  ERROR_OSEVENT_REG_FAIL,
  LIBXL_EVENT_TYPE,
  LIBXL_LAYOUT,
  parseLibxlDominfo,
  parseLibxlEvent,
  SIGCHLD_OWNER_MAINLOOP,
} from "../ffi/mod.ts";
import { XenUsageError } from "../core/errors.ts";
import { LIBXL, LIBXL_CALLBACKS } from "../ffi/symbols.ts";
import type { NativeType } from "../ffi/types.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/libxl_layout.c", import.meta.url));

function requireToolchain(): void {
  requireCToolchain("/usr/include/libxl.h", "libxl headers");
}

let layout: Map<string, number> | undefined;

function fromC(): Map<string, number> {
  if (layout) return layout;
  requireToolchain();
  const dir = mkdtempSync(join(tmpdir(), "xenchan-libxl-layout-"));
  try {
    const exe = join(dir, "libxl_layout");
    execFileSync("gcc", ["-std=gnu11", "-Wall", "-Werror", "-o", exe, FIXTURE], { stdio: "pipe" });
    const values = new Map<string, number>();
    for (const line of execFileSync(exe, { encoding: "utf8" }).trim().split("\n")) {
      const [name, value] = line.split(" ");
      values.set(name, Number(value));
    }
    layout = values;
    return values;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** C field names of LIBXL_LAYOUT's camelCase keys, where they differ. */
const C_NAMES: Record<string, string> = {
  fdRegister: "fd_register",
  fdModify: "fd_modify",
  fdDeregister: "fd_deregister",
  timeoutRegister: "timeout_register",
  timeoutModify: "timeout_modify",
  timeoutDeregister: "timeout_deregister",
  forUser: "for_user",
  eventOccursMask: "event_occurs_mask",
  eventOccurs: "event_occurs",
  forkReplacement: "fork_replacement",
  reapedCallback: "reaped_callback",
  neverStop: "never_stop",
  shutdownReason: "shutdown_reason",
  outstandingMemkb: "outstanding_memkb",
  currentMemkb: "current_memkb",
  sharedMemkb: "shared_memkb",
  pagedMemkb: "paged_memkb",
  maxMemkb: "max_memkb",
  cpuTime: "cpu_time",
  vcpuMaxId: "vcpu_max_id",
  vcpuOnline: "vcpu_online",
  domainType: "domain_type",
};

const C_TYPES: Record<NativeType, string> = {
  void: "void",
  i16: "int16_t",
  u16: "uint16_t",
  i32: "int32_t",
  u32: "uint32_t",
  i64: "int64_t",
  u64: "uint64_t",
  pointer: "void *",
  buffer: "void *",
};

/** Where a callback takes `struct timeval abs` (as two i64 in the table). */
const TIMEVAL_AT: Record<string, number> = { timeout_register: 2, timeout_modify: 2 };

/** How each callback type is reached in C: a member of a libxl struct. */
const CALLBACK_MEMBERS: Record<keyof typeof LIBXL_CALLBACKS, string> = {
  fd_register: "osevent_hooks.fd_register",
  fd_modify: "osevent_hooks.fd_modify",
  fd_deregister: "osevent_hooks.fd_deregister",
  timeout_register: "osevent_hooks.timeout_register",
  timeout_modify: "osevent_hooks.timeout_modify",
  timeout_deregister: "osevent_hooks.timeout_deregister",
  event_occurs: "event_hooks.event_occurs",
  disaster: "event_hooks.disaster",
  ao_complete: "how.callback",
};

/** One C function that calls `callee` with the declared types and keeps its result. */
function checkCall(
  name: string,
  callee: string,
  args: readonly NativeType[],
  returns: NativeType,
  timevalAt?: number,
): string {
  const decls = args.map((t, i) => `  ${C_TYPES[t]} a${i} = 0;`);
  const values: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (i === timevalAt) {
      assert.deepEqual([args[i], args[i + 1]], ["i64", "i64"], `${name}: timeval as two i64`);
      values.push(`(struct timeval){ .tv_sec = a${i}, .tv_usec = a${i + 1} }`);
      i++;
    } else {
      values.push(`a${i}`);
    }
  }
  const call = `${callee}(${values.join(", ")})`;
  const use = returns === "void"
    ? `  _Static_assert(__builtin_types_compatible_p(__typeof__(${call}), void), "${name} returns void");\n  ${call};`
    : `  ${C_TYPES[returns]} r = ${call};\n  (void)r;`;
  return `void check_${name}(void);\nvoid check_${name}(void) {\n${decls.join("\n")}\n${use}\n}\n`;
}

function prototypeSource(): string {
  const parts = [
    "#include <stdint.h>",
    "#include <sys/time.h>",
    "#include <libxl.h>",
    "#include <libxl_event.h>",
    "#include <libxl_utils.h>",
    "extern libxl_osevent_hooks osevent_hooks;",
    "extern libxl_event_hooks event_hooks;",
    "extern libxl_asyncop_how how;",
  ];
  for (const [name, def] of Object.entries(LIBXL)) {
    parts.push(checkCall(name, name, def.args, def.returns));
  }
  for (const [name, def] of Object.entries(LIBXL_CALLBACKS)) {
    const member = CALLBACK_MEMBERS[name as keyof typeof LIBXL_CALLBACKS];
    parts.push(checkCall(`cb_${name}`, member, def.args, def.returns, TIMEVAL_AT[name]));
  }
  return parts.join("\n");
}

function compile(source: string): { ok: boolean; output: string } {
  requireToolchain();
  const dir = mkdtempSync(join(tmpdir(), "xenchan-libxl-proto-"));
  try {
    const file = join(dir, "proto.c");
    writeFileSync(file, source);
    const flags = ["-std=gnu11", "-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion"];
    execFileSync("gcc", [...flags, "-Werror", "-c", "-o", join(dir, "proto.o"), file], {
      stdio: "pipe",
    });
    return { ok: true, output: "" };
  } catch (e) {
    const err = e as { stderr?: { toString(): string } };
    return { ok: false, output: err.stderr?.toString() ?? String(e) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("libxl structs against /usr/include/libxl*.h (gcc + libxen-dev)", () => {
  it("every size and offset of LIBXL_LAYOUT matches", () => {
    const c = fromC();
    let compared = 0;
    for (const [struct, fields] of Object.entries(LIBXL_LAYOUT)) {
      for (const [field, value] of Object.entries(fields)) {
        const key = `${struct}.${field === "size" ? "size" : C_NAMES[field] ?? field}`;
        assert.equal(c.get(key), value, key);
        compared++;
      }
    }
    assert.equal(compared, 45, "every field of LIBXL_LAYOUT was compared");
    assert.equal(c.get("oseventHooks.size"), 48);
    assert.equal(c.get("event.size"), 208);
    assert.equal(c.get("event.type"), 48);
    assert.equal(c.get("event.domid"), 16);
    assert.equal(c.get("event.for_user"), 40);
    assert.equal(c.get("event.u"), 56);
    assert.equal(c.get("event.shutdown_reason"), LIBXL_LAYOUT.event.u);
    assert.equal(c.get("event.sizeof_shutdown_reason"), 1);
  });

  it("the constants the binding uses match the headers", () => {
    const c = fromC();
    assert.equal(c.get("ERROR_OSEVENT_REG_FAIL"), ERROR_OSEVENT_REG_FAIL);
    assert.equal(c.get("ERROR_DOMAIN_NOTFOUND"), ERROR_DOMAIN_NOTFOUND);
    assert.equal(c.get("LIBXL_VERSION"), 0);
    assert.equal(c.get("libxl_sigchld_owner_mainloop"), SIGCHLD_OWNER_MAINLOOP);
    for (const [name, value] of Object.entries(LIBXL_EVENT_TYPE)) {
      assert.equal(c.get(`LIBXL_EVENT_TYPE_${name}`), value, name);
    }
    assert.deepEqual(
      [
        c.get("LIBXL_DOMAIN_TYPE_HVM"),
        c.get("LIBXL_DOMAIN_TYPE_PV"),
        c.get("LIBXL_DOMAIN_TYPE_PVH"),
      ],
      [1, 2, 3],
    );
    assert.equal(c.get("XTL_DEBUG"), 1, "debug is level 1 (LIBXL_LOG_LEVELS index + 1)");
    assert.equal(c.get("XTL_CRITICAL"), 9);
    assert.equal(c.get("XTL_STDIOSTREAM_HIDE_PROGRESS"), 4);
    assert.equal(c.get("_IOLBF"), 1);
  });

  it("struct timeval is two 8-byte integers (passed as two i64 on x86_64)", () => {
    const c = fromC();
    assert.equal(c.get("sizeof_timeval"), 16);
    assert.equal(c.get("sizeof_timeval_tv_sec"), 8);
    assert.equal(c.get("sizeof_timeval_tv_usec"), 8);
  });
});

describe("the LIBXL symbol table against the header prototypes", () => {
  it("a call with exactly the declared types compiles for every symbol and callback", () => {
    const result = compile(prototypeSource());
    assert.ok(result.ok, `prototype check failed:\n${result.output}`);
    assert.equal(Object.keys(LIBXL).length, 23, "every symbol was checked");
    assert.equal(Object.keys(LIBXL_CALLBACKS).length, 9);
  });

  it("the check catches a wrong declaration (a narrowed argument, a wrong arity, a wrong result)", () => {
    const wrongWidth = checkCall("bad1", "libxl_evenable_domain_death", [
      "pointer",
      "u64", // domid is uint32_t: narrowing
      "u64",
      "buffer",
    ], "i32");
    const wrongArity = checkCall("bad2", "libxl_ctx_free", ["pointer", "i32"], "i32");
    const wrongResult = checkCall("bad3", "libxl_list_domain", ["pointer", "buffer"], "i32");
    const header = "#include <stdint.h>\n#include <libxl.h>\n";
    for (
      const [label, fn] of [["width", wrongWidth], ["arity", wrongArity], ["result", wrongResult]]
    ) {
      assert.equal(compile(header + fn).ok, false, `a wrong ${label} must not compile`);
    }
  });
});

describe("decoding libxl structs", () => {
  it("parseLibxlEvent reads type, domid, for_user and the shutdown reason at the C offsets", () => {
    const L = LIBXL_LAYOUT.event;
    const bytes = new Uint8Array(L.size);
    const dv = new DataView(bytes.buffer);
    dv.setUint32(L.domid, 7, true);
    bytes.set([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], L.domuuid);
    dv.setBigUint64(L.forUser, 0x1122334455667788n, true);
    dv.setInt32(L.type, LIBXL_EVENT_TYPE.DOMAIN_SHUTDOWN, true);
    dv.setUint8(L.u, 3);
    assert.deepEqual(parseLibxlEvent(bytes), {
      type: 1,
      domid: 7,
      domuuid: "deadbeef-0102-0304-0506-0708090a0b0c",
      forUser: 0x1122334455667788n,
      shutdownReason: 3,
    });
    dv.setInt32(L.type, LIBXL_EVENT_TYPE.DOMAIN_DEATH, true);
    assert.equal("shutdownReason" in parseLibxlEvent(bytes), false);
    assert.throws(() => parseLibxlEvent(bytes.subarray(0, 100)), XenUsageError);
  });

  it("parseLibxlDominfo reads a 4.17 libxl_dominfo at an offset of a list", () => {
    const L = LIBXL_LAYOUT.dominfo;
    const list = new Uint8Array(L.size * 2);
    const dv = new DataView(list.buffer, L.size);
    dv.setUint32(L.domid, 3, true);
    dv.setUint8(L.paused, 1);
    dv.setUint8(L.shutdown, 1);
    dv.setInt32(L.shutdownReason, 1, true);
    dv.setBigUint64(L.currentMemkb, 131072n, true);
    dv.setBigUint64(L.maxMemkb, 132096n, true);
    dv.setBigUint64(L.cpuTime, 123456789n, true);
    dv.setUint32(L.vcpuOnline, 1, true);
    dv.setInt32(L.domainType, 2, true);
    const info = parseLibxlDominfo(list, L.size);
    assert.equal(info.domid, 3);
    assert.equal(info.paused, true);
    assert.equal(info.running, false);
    assert.equal(info.shutdownReason, 1);
    assert.equal(info.currentMemkb, 131072n);
    assert.equal(info.maxMemkb, 132096n);
    assert.equal(info.cpuTimeNs, 123456789n);
    assert.equal(info.onlineVcpus, 1);
    assert.equal(info.type, "pv");
    assert.equal(parseLibxlDominfo(list, 0).shutdownReason, undefined);
    assert.throws(() => parseLibxlDominfo(list, 200), XenUsageError);
  });
});
