/**
 * The peer process of the fidelity engine's dom0 kill lane on real Xen: a
 * child of the test process in dom0, started by lanes.ts ffiTarget under
 * the test's runtime. It executes PeerCommands (tests/helpers/peer.ts) with
 * its own handles on the FFI backend, one JSON line per command on stdin,
 * one JSON line per outcome on stdout, in order, and writes "ready" first.
 * The test kills it with SIGKILL; its kernel releases its handles. Ends
 * when stdin ends.
 *
 * @module
 */
import process from "node:process";
import { createInterface } from "node:readline";
import { PeerExecutor } from "../helpers/peer.ts";

const executor = new PeerExecutor({ backend: "ffi" });
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
process.stdout.write("ready\n");
for await (const line of lines) {
  if (!line.trim()) continue;
  const outcome = await executor.execute(JSON.parse(line));
  process.stdout.write(JSON.stringify(outcome) + "\n");
}
executor.close();
