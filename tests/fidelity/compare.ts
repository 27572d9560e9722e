/**
 * Comparing traces, the fixture format, and shrinking a divergence to a
 * minimal operation sequence.
 *
 * Shrinking: operations name their operands by slot (ops.ts), so every
 * subsequence of a sequence is itself a valid program. `shrink` runs
 * delta debugging (ddmin) over the operation list with a caller-supplied
 * oracle "does this subsequence still diverge?". In dom0 the oracle runs the
 * candidate on real Xen and on the simulator; on the host, where only the
 * recorded real trace exists, the oracle can only judge prefixes of the
 * recorded sequence, so the host reports the shortest diverging prefix
 * (`firstDivergence` gives it directly) and the dom0 test the ddmin result.
 *
 * @module
 */
import type { Dom0StartState } from "./lanes.ts";
import type { Op } from "./ops.ts";
import type { TraceEntry } from "./run.ts";

/** Fixture format version; bump when the generator or the trace text changes. */
export const FIXTURE_VERSION = 2;

/** One recorded sequence: its seed, length and the real trace. */
export interface RecordedSequence {
  readonly seed: number;
  readonly length: number;
  readonly trace: readonly TraceEntry[];
}

/** The committed fixture of one lane (tests/fidelity/fixtures/<lane>.json). */
export interface LaneFixture<S = Dom0StartState> {
  readonly version: number;
  readonly lane: string;
  /** Where and how it was recorded (Xen and kernel versions, runtime). */
  readonly recordedOn: string;
  /** What the lane measured before the first sequence (dom0 lanes: the kernel's ports). */
  readonly startState: S;
  readonly sequences: readonly RecordedSequence[];
}

/** The first difference of two traces: its index and both entries (undefined: missing). */
export interface Divergence {
  readonly index: number;
  readonly expected: TraceEntry | undefined;
  readonly actual: TraceEntry | undefined;
}

/** The first index where the traces differ, or null when they are identical. */
export function firstDivergence(
  expected: readonly TraceEntry[],
  actual: readonly TraceEntry[],
): Divergence | null {
  const n = Math.max(expected.length, actual.length);
  for (let i = 0; i < n; i++) {
    if (expected[i] !== actual[i]) return { index: i, expected: expected[i], actual: actual[i] };
  }
  return null;
}

/**
 * Delta debugging (Zeller's ddmin) over `ops`: returns a 1-minimal
 * subsequence for which `diverges` is still true (removing any single
 * operation makes it pass). `diverges(ops)` must be true for the input;
 * at most `budget` oracle calls are made (then the best so far is returned).
 */
export async function shrink<T = Op>(
  ops: readonly T[],
  diverges: (candidate: readonly T[]) => Promise<boolean>,
  budget = 400,
): Promise<T[]> {
  let current = [...ops];
  let calls = 0;
  let n = 2;
  while (current.length >= 2 && calls < budget) {
    const size = Math.ceil(current.length / n);
    let reduced = false;
    for (let start = 0; start < current.length && calls < budget; start += size) {
      const complement = [...current.slice(0, start), ...current.slice(start + size)];
      calls++;
      if (complement.length > 0 && await diverges(complement)) {
        current = complement;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= current.length) break;
      n = Math.min(n * 2, current.length);
    }
  }
  return current;
}

/** A readable report of a divergence: the minimal operations and both traces around it. */
export function divergenceReport(
  seed: number,
  ops: readonly object[],
  divergence: Divergence,
): string {
  return [
    `seed ${seed}: first divergence at operation ${divergence.index}`,
    `  real: ${divergence.expected ?? "(nothing)"}`,
    `  sim:  ${divergence.actual ?? "(nothing)"}`,
    `  operations (${ops.length}):`,
    ...ops.map((op, i) => `    ${i}: ${JSON.stringify(op)}`),
  ].join("\n");
}

/** The fidelity summary line the test summary and the tests print. */
export function summaryLine(sequences: number, operations: number, divergences: number): string {
  return `fidelity: ${sequences} sequences, ${operations} operations, ${divergences} divergences`;
}
