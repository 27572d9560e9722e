/**
 * The C libxenvchan peer (bench/c/vchan_peer.c), kept for the real-Xen
 * interop tests and the benchmark, compiles and links against libxen-dev's
 * libxenvchan here, and prints its usage with exit status 2.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("bench/c/vchan_peer.c builds with gcc -lxenvchan [vchan:c-build]", () => {
  const source = new URL("../bench/c/vchan_peer.c", import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), "vchan-peer-"));
  try {
    const binary = join(dir, "vchan_peer");
    const cc = spawnSync("gcc", ["-O2", "-Wall", "-Werror", "-o", binary, source, "-lxenvchan"], {
      encoding: "utf8",
    });
    assert.equal(cc.status, 0, `gcc failed: ${cc.stderr}`);
    const run = spawnSync(binary, [], { encoding: "utf8" });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /usage: .* server\|client echo\|source\|sink\|pingpong DOMID PATH/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
