/**
 * Deno with zero permissions (no -A, no -P, no prompt): importing mod.ts and
 * running on the simulator needs nothing, and "auto" explains the fallback.
 * Bun has no permission system, so this is a Deno-only test.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";

const isDeno = "Deno" in globalThis;

/** The part of Deno.Command this test uses (typed here so Bun needs no Deno types). */
interface DenoCommandApi {
  Command: new (cmd: string, options: { args: string[]; stdout: "piped"; stderr: "piped" }) => {
    outputSync(): { code: number; stdout: Uint8Array; stderr: Uint8Array };
  };
}

describe("zero permissions", () => {
  it("a script runs on the simulator and auto says FFI is not permitted", {
    skip: !isDeno && "Bun has no permission system",
  }, () => {
    const script = new URL("./fixtures/no_permissions.ts", import.meta.url).pathname;
    // Deno.Command, not node:child_process: Deno's node compatibility layer adds
    // -A when a script spawns deno itself, which would defeat this test.
    const deno = (globalThis as unknown as { Deno: DenoCommandApi }).Deno;
    const output = new deno.Command(process.execPath, {
      args: ["run", "--no-prompt", "--no-config", script],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    const result = {
      status: output.code,
      stdout: decode(output.stdout),
      stderr: decode(output.stderr),
    };
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split("\n").at(-1)!);
    assert.equal(report.kind, "sim");
    assert.match(report.reason, /FFI is not permitted/);
    assert.equal(report.delivered, true);
  });
});
