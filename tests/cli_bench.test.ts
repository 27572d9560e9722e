/**
 * `xenchan bench`: the output parsers on real outputs of the suites, and a
 * quick run of the fast suites that prints the table.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import {
  benchOptions,
  formatRatio,
  parseAbiScan,
  parseDoorbell,
  parseOsevent,
  parseRoundtrip,
  parseSimThroughput,
  runBench,
} from "../cli/bench.ts";
import { bufferOutput } from "../cli/io.ts";

const ABI_SCAN = ` ABI   ports  pattern  TS ns/event  TS Mevents/s  C 2L ns/event   TS/C
  2l      10   sparse        392.5          2.55           15.2  25.86
  2l      10      low         92.6         10.80           14.3   6.48
  2l      10    dense         51.8         19.29           13.0   3.99
  3l  262143   sparse       1189.8          0.84              -      -
fifo      10   sparse        766.3          1.31           15.2  50.48
`;
const DOORBELL =
  `doorbell bench (deno, 2000 iterations)\n{"name":"deno","iterations":2000,"js":{"rw_ns":2000,"seq_ns":40000,"hit_ns":440,"miss_ns":155},"c":{"rw_ns":500,"seq_ns":1000},"ratio":{"rw":4,"seq":40}}\n`;
const OSEVENT =
  `table...\n{"name":"x","dispatch":{"check":{"10":371,"1000":367,"10000":600},"libxl":{"10":234,"1000":14782,"10000":150000},"wait":{"10":700,"1000":1000,"10000":1400}}}\n`;
const SIM = `scenario                             n    unit  per second
-------------------------------  -----  ------  ----------
notify -> pending -> unmask          1  events   1,844,437
notify -> pending -> unmask      10000  events   3,088,976
map 1 ref + unmap (round-robin)  10000  cycles     616,003
`;

describe("xenchan bench parsers", () => {
  it("abi_scan: one row per ABI, median ratio over the rows with a C figure", () => {
    const rows = parseAbiScan(ABI_SCAN);
    assert.deepEqual(rows.map((r) => r.suite + ":" + r.measure.split(" ")[0]), [
      "abi_scan:2l",
      "abi_scan:fifo",
    ]);
    assert.equal(rows[0].ratio, 6.48);
    assert.match(rows[0].measure, /median of 3; worst 25\.9x/);
    assert.equal(rows[1].ratio, 50.48);
    assert.throws(() => parseAbiScan("nothing here"), /no result rows/);
  });

  it("doorbell, osevent, sim_throughput and the round trip", () => {
    assert.deepEqual(parseDoorbell(DOORBELL).map((r) => r.ratio), [4, 40]);
    const os = parseOsevent(OSEVENT);
    assert.equal(os[0].ratio, 600 / 150000);
    assert.equal(os[1].ratio, 2);
    const sim = parseSimThroughput(SIM);
    assert.deepEqual(sim.map((r) => r.xenchan), ["3,088,976 events/s", "616,003 cycles/s"]);
    assert.ok(sim.every((r) => r.ratio === null));
    const rt = parseRoundtrip(
      `{"name":"deno","roundtrips":1000,"ns_per_roundtrip":600000,"notify_ns":20000}\n` +
        `{"name":"deno-blocking","roundtrips":1000,"ns_per_roundtrip":550000,"notify_ns":10000}\n` +
        `---c---\n{"name":"c","roundtrips":1000,"ns_per_roundtrip":500000,"notify_ns":10000}\n`,
    );
    assert.deepEqual(rt.map((r) => r.ratio), [1.2, 1.1, 2]);
    assert.match(rt[0].measure, /awaited pending/);
    assert.match(rt[1].measure, /blocking pendingSync/);
    assert.throws(() => parseDoorbell("no json"), /no JSON line/);
    assert.throws(() => parseOsevent(`{"dispatch":{}}`), /missing/);
  });

  it("formats ratios", () => {
    assert.equal(formatRatio(3.7512), "3.75x");
    assert.equal(formatRatio(0.004), "0.0040x");
    assert.equal(formatRatio(null), "-");
  });

  it("--only and --skip select suites", () => {
    assert.deepEqual(benchOptions({ only: ["abi_scan,doorbell"], skip: ["doorbell"] }).suites, [
      "abi_scan",
    ]);
    assert.equal(benchOptions({}).suites.length, 5);
  });
});

describe("xenchan bench --quick", () => {
  it("runs the fast suites and prints one table (the real-Xen suite is skipped off Xen)", {
    timeout: 120_000,
  }, async () => {
    const out = bufferOutput();
    const code = await runBench(
      benchOptions({ quick: true, only: ["abi_scan,doorbell,evtchn_roundtrip"] }),
      out,
    );
    const text = out.text();
    assert.equal(code, 0, text + out.stderr.join("\n"));
    assert.match(text, /^suite\s+measurement\s+xenchan\s+baseline\s+ratio$/m);
    const gcc = spawnSync("gcc", ["--version"], { stdio: "ignore" }).status === 0;
    for (const suite of ["abi_scan", "doorbell"]) {
      if (gcc) assert.match(text, new RegExp(`^${suite}\\s+.+\\s+[\\d.]+x$`, "m"), suite);
      else assert.match(text, new RegExp(`^skipped ${suite}: its C baseline needs gcc`, "m"));
    }
    assert.match(text, /^(skipped evtchn_roundtrip: needs a real Xen dom0|evtchn_roundtrip\s)/m);
    assert.ok(out.stderr.some((l) => /^\[1\/3\] abi_scan: /.test(l)), "progress on stderr");
  });
});
