/**
 * The stock C tools of Debian's xenstore-utils (libxenstore 4.17) against
 * the simulated xenstored served on a unix socket (XENSTORED_PATH), on a
 * machine with no Xen. Skipped, saying why, only when the tools are not
 * installed (scripts/xen/config.mjs HOST_PACKAGES installs them for the
 * host run).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveXenStoreSocket, type XenStoreSocketServer } from "../ffi/mod.ts";
import { SimHypervisor } from "../sim/mod.ts";
import { XenUsageError } from "../core/errors.ts";

const TOOLS = [
  "xenstore-write",
  "xenstore-read",
  "xenstore-ls",
  "xenstore-rm",
  "xenstore-list",
  "xenstore-exists",
  "xenstore-chmod",
  "xenstore-watch",
];
const BIN = "/usr/bin";
const missing = TOOLS.filter((t) => !existsSync(join(BIN, t)));
const skip = missing.length > 0
  ? `xenstore-utils is not installed (missing ${
    missing.join(", ")
  }; apt-get install xenstore-utils)`
  : false;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe("xenstore C tools against the simulated xenstored socket", { skip }, () => {
  let dir: string;
  let socket: string;
  let hv: SimHypervisor;
  let served: XenStoreSocketServer;

  const tool = (name: string, ...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        join(BIN, name),
        args,
        { env: { ...process.env, XENSTORED_PATH: socket }, timeout: 10_000 },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
          resolve({ code, stdout: String(stdout), stderr: String(stderr) });
        },
      );
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "xenchan-xs-"));
    socket = join(dir, "socket");
    hv = new SimHypervisor();
    served = await serveXenStoreSocket(hv.xenstore, socket);
  });

  after(async () => {
    await served.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates the socket mode 0600", () => {
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    assert.ok(statSync(socket).isSocket());
  });

  it("xenstore-write, -read, -list, -ls, -exists, -rm", async () => {
    let r = await tool("xenstore-write", "/tool/test/a", "hello", "/tool/test/b", "world");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(hv.xenstore.inspect("/tool/test/a")?.value, new TextEncoder().encode("hello"));
    r = await tool("xenstore-read", "/tool/test/a");
    assert.deepEqual([r.code, r.stdout], [0, "hello\n"]);
    r = await tool("xenstore-list", "/tool/test");
    assert.deepEqual([r.code, r.stdout], [0, "a\nb\n"]);
    r = await tool("xenstore-ls", "/tool/test");
    assert.deepEqual([r.code, r.stdout], [0, 'a = "hello"\nb = "world"\n']);
    r = await tool("xenstore-exists", "/tool/test/a");
    assert.equal(r.code, 0);
    r = await tool("xenstore-exists", "/tool/test/nope");
    assert.notEqual(r.code, 0);
    r = await tool("xenstore-read", "/tool/test/nope");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /couldn't read path/);
    r = await tool("xenstore-rm", "/tool/test/a");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(hv.xenstore.inspect("/tool/test/a"), undefined);
    r = await tool("xenstore-list", "/tool/test");
    assert.deepEqual([r.code, r.stdout], [0, "b\n"]);
  });

  it("xenstore-chmod and xenstore-ls -p", async () => {
    const d = hv.createDomain();
    let r = await tool("xenstore-write", "/tool/perm", "x");
    assert.equal(r.code, 0, r.stderr);
    r = await tool("xenstore-chmod", "/tool/perm", "n0", `r${d}`);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(hv.xenstore.inspect("/tool/perm")?.permissions, ["n0", `r${d}`]);
    r = await tool("xenstore-ls", "-p", "/tool");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^perm = "x"[ .]+\\(n0,r${d}\\)$`, "m"));
    // The guest's view follows the new permissions.
    r = await tool("xenstore-ls", `/local/domain/${d}`);
    assert.match(r.stdout, /^device = ""$/m);
  });

  it("xenstore-watch sees the initial event and a write (bounded, then killed)", async () => {
    const child = spawn(join(BIN, "xenstore-watch"), ["/tool/watched"], {
      env: { ...process.env, XENSTORED_PATH: socket },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (b: Uint8Array) => (out += new TextDecoder().decode(b)));
    const seen = async (line: string) => {
      for (let i = 0; i < 1000 && !out.split("\n").includes(line); i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(out.split("\n").includes(line), `no "${line}" from xenstore-watch; got ${out}`);
    };
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    try {
      await seen("/tool/watched");
      const r = await tool("xenstore-write", "/tool/watched/leaf", "v");
      assert.equal(r.code, 0, r.stderr);
      await seen("/tool/watched/leaf");
      assert.equal(hv.xenstore.stats().watches, 1);
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
    // The daemon forgets the watch once the tool's connection is gone.
    for (let i = 0; i < 100 && hv.xenstore.stats().watches > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(hv.xenstore.stats().watches, 0);
  });
});

describe("serveXenStoreSocket", () => {
  it("replaces a stale socket, refuses a regular file, and close() removes the socket", async () => {
    const dir = mkdtempSync(join(tmpdir(), "xenchan-xs-"));
    try {
      const hv = new SimHypervisor();
      const path = join(dir, "s");
      const first = await serveXenStoreSocket(hv.xenstore, path);
      assert.ok(statSync(path).isSocket());
      // A second server on the same path replaces the (now stale) socket file.
      const second = await serveXenStoreSocket(hv.xenstore, path);
      assert.equal(second.path, path);
      await second.close();
      await first.close();
      assert.equal(existsSync(path), false);
      const file = join(dir, "f");
      writeFileSync(file, "keep me");
      await assert.rejects(serveXenStoreSocket(hv.xenstore, file), XenUsageError);
      assert.equal(existsSync(file), true);
      await assert.rejects(
        serveXenStoreSocket(hv.xenstore, join(dir, "t"), { domid: -1 }),
        XenUsageError,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
