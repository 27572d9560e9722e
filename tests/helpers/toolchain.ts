/**
 * The C toolchain the layout tests compile their fixtures with: gcc and the
 * libxen-dev headers. The host test run installs both (scripts/xen/config.mjs
 * HOST_PACKAGES).
 *
 * @module
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

/** What to do when part of the toolchain is missing. */
export const TOOLCHAIN_INSTALL = "install them with: apt-get install gcc libxen-dev";

/**
 * Fails the calling test, saying what to install, unless gcc runs and
 * `header` exists (`what` names the headers in the message, e.g. "libxl
 * headers"). Returns nothing; never skips.
 */
export function requireCToolchain(header: string, what: string): void {
  try {
    execFileSync("gcc", ["--version"], { stdio: "pipe" });
  } catch (e) {
    assert.fail(`gcc is not available (${(e as Error).message}); ${TOOLCHAIN_INSTALL}`);
  }
  if (!existsSync(header)) assert.fail(`${what} missing (${header}); ${TOOLCHAIN_INSTALL}`);
}
