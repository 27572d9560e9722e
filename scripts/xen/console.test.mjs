// Self-tests of the dom0 -> host console protocol (run by scripts/test_host.mjs under node --test).
// The dump half runs the exact sh text /init uses (dumpShell) under the host's busybox.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import { parseConsole, TAG } from "./console.mjs";
import { dumpShell } from "./initrd.mjs";

const BUSYBOX = ["/bin/busybox", "/usr/bin/busybox"].find((p) => fs.existsSync(p));

/** Runs dumpShell() in a temp dir holding `files`; returns the printed text. */
function dump(files, nonce, status) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "xenchan-dump-"));
  try {
    for (const [name, bytes] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), bytes);
    }
    return execFileSync(BUSYBOX, ["sh", "-c", dumpShell()], {
      cwd: dir,
      env: { PATH: process.env.PATH, XENCHAN_NONCE: nonce, status: String(status) },
      encoding: "latin1",
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("console protocol", { skip: BUSYBOX ? false : "busybox not installed" }, () => {
  it("round-trips binary files, names with spaces and the exit status", () => {
    const files = {
      "deno.xml": Buffer.from("<testsuites/>\n"),
      "sub/a b.bin": crypto.randomBytes(5000),
      "empty": Buffer.alloc(0),
    };
    const text = `(XEN) noise\n${TAG}START:n1@@\nkernel: line\n` + dump(files, "n1", 3);
    const got = parseConsole(text, "n1");
    assert.equal(got.started, true);
    assert.equal(got.status, 3);
    assert.deepEqual(got.errors, []);
    assert.deepEqual([...got.files.keys()].sort(), Object.keys(files).sort());
    for (const [name, bytes] of Object.entries(files)) assert.ok(got.files.get(name).equals(bytes));
    assert.deepEqual(got.dom0Lines, ["kernel: line"]);
  });

  it("reports a damaged file instead of returning wrong bytes", () => {
    const text = dump({ "r.txt": Buffer.from("hello world, hello xen\n") }, "n2", 0);
    const damaged = text.replace(/(B64:n2:)(.)/, (_, p, c) => p + (c === "A" ? "B" : "A"));
    const got = parseConsole(damaged, "n2");
    assert.equal(got.files.has("r.txt"), false);
    assert.match(got.errors[0], /r\.txt: .*damaged/);
  });

  it("ignores markers of another run and accepts prefixes before a marker", () => {
    const text = `${TAG}START:old@@\n${TAG}EXIT:old:9@@\n(d0) ${TAG}START:new@@\n` +
      `${TAG}EXIT:new:0@@\r\n`;
    const got = parseConsole(text, "new");
    assert.equal(got.started, true);
    assert.equal(got.status, 0);
  });

  it("reports a file cut off before its end marker", () => {
    const text = dump({ "x.log": Buffer.from("abc\n") }, "n3", 0).split(`${TAG}END`)[0];
    const got = parseConsole(text, "n3");
    assert.equal(got.status, null);
    assert.match(got.errors[0], /x\.log: no end marker/);
  });
});
