/**
 * The backends the contract suite runs on. Every contract test is written
 * once and runs on each target: "sim" always (a fresh simulated hypervisor
 * per test, acting as dom0) and "ffi" where real Xen is usable. The
 * environment variable XENCHAN_TEST_BACKENDS (comma list) narrows the set;
 * the dom0 harness sets it to "ffi".
 *
 * @module
 */
import process from "node:process";
import type { OpenOptions } from "../../mod.ts";
import { SimHypervisor } from "../../sim/mod.ts";
import { whyNoXen } from "./xen.ts";

/** One backend under test. */
export interface ContractTarget {
  readonly name: "sim" | "ffi";
  /** A reason to skip every test of this target, or false to run them. */
  readonly skip: string | false;
  /** Fresh options for one test; every handle of that test must use them. */
  options(): OpenOptions;
}

function requested(): Set<string> {
  const list = process.env.XENCHAN_TEST_BACKENDS ?? "sim,ffi";
  return new Set(list.split(",").map((s) => s.trim()).filter(Boolean));
}

/** The targets, in the order sim, ffi. */
export async function contractTargets(): Promise<ContractTarget[]> {
  const wanted = requested();
  const targets: ContractTarget[] = [];
  if (wanted.has("sim")) {
    targets.push({
      name: "sim",
      skip: false,
      options: () => ({ backend: new SimHypervisor().backend(0) }),
    });
  }
  if (wanted.has("ffi")) {
    const reason = await whyNoXen();
    targets.push({ name: "ffi", skip: reason ?? false, options: () => ({ backend: "ffi" }) });
  }
  return targets;
}
