/**
 * Helpers for the event delivery ABI tests.
 *
 * @module
 */
import type { EventAbi } from "../../plugins/abi/mod.ts";

/** Unmasks `ports`, as the guest does when it binds them. */
export function openPorts(abi: EventAbi, ...ports: number[]): void {
  for (const p of ports) abi.unmask(p);
}

/** Runs the guest scan of `vcpu` and returns the ports delivered, in order. */
export function drain(abi: EventAbi, vcpu = 0, budget?: number): number[] {
  const got: number[] = [];
  abi.scan(vcpu, (p) => got.push(p), budget);
  return got;
}
