/**
 * `xenchan vchan`: connects stdin and stdout to a vchan, as server or
 * client (the role vchan-socket-proxy plays for sockets): stdin goes into the
 * vchan, what the peer sends goes to stdout. The session ends when the peer
 * closes (exit 0), on SIGINT/SIGTERM (exit 0), or when the vchan fails (exit
 * 1, with the reason on stderr). After stdin ends, the command waits until
 * the peer has read everything, then keeps copying the peer's bytes to
 * stdout until the peer closes.
 *
 * `--simulate` is a self-test with both ends in this process: a simulated
 * dom0 runs an echo server, a simulated guest runs the client that stdin and
 * stdout are connected to, so the output equals the input; the rendezvous
 * goes through the simulator's xenstored.
 *
 * On real Xen the rendezvous needs the XenStore client (openXenStore in
 * mod.ts); when this build lacks it, the command says so.
 *
 * @module
 */
import process from "node:process";
import * as api from "../mod.ts";
import { openXenStore, selectBackend, SimHypervisor, type XenBackend } from "../mod.ts";
import {
  connectVchan,
  listenVchan,
  type Vchan,
  VchanError,
  vchanPath,
  type VchanStore,
} from "../plugins/vchan/mod.ts";
import {
  type BackendName,
  backendOption,
  type CommandSpec,
  intOption,
  type ParsedValues,
  UsageError,
} from "./args.ts";
import type { Output } from "./io.ts";

/** The vchan command's arguments. */
export const VCHAN_SPEC: CommandSpec = {
  name: "vchan",
  summary: "connect stdin and stdout to a vchan (server or client), like vchan-socket-proxy",
  options: {
    server: { type: "boolean" },
    client: { type: "boolean" },
    domid: { type: "string" },
    path: { type: "string" },
    port: { type: "string" },
    "read-min": { type: "string" },
    "write-min": { type: "string" },
    wait: { type: "boolean" },
    backend: { type: "string" },
    simulate: { type: "boolean" },
  },
  help: `Usage: xenchan vchan (--server | --client) --domid D (--path P | --port N) [options]
       xenchan vchan --simulate [--read-min B] [--write-min B]

Connects stdin and stdout to a vchan (libxenvchan's protocol, Xen 4.17):
stdin is written into the vchan, what the peer sends is written to stdout.
Ends when the peer closes (exit 0), on Ctrl-C/SIGTERM (exit 0), or when the
vchan fails (exit 1).

Options:
  --server          offer the vchan to domain D (publishes ring-ref and
                    event-channel under the path, readable by D only)
  --client          connect to the vchan domain D offers at the path
  --domid D         the peer's domain id
  --path P          the XenStore path of the rendezvous
  --port N          instead of --path: the conventional path
                    /local/domain/<server>/data/vchan/<client>/N
  --read-min B      server: at least B bytes in the ring it reads (default 0)
  --write-min B     server: at least B bytes in the ring it writes (default 0)
                    (0 and 0 give libxenvchan's in-page rings of 1 and 2 KiB)
  --wait            client: wait for the server to appear
  --backend B       auto (default) or ffi
  --simulate        self-test on the simulator: an echo server in simulated
                    dom0, this end a client in a simulated guest
  -h, --help        show this help

Examples:
  echo hello | deno run -P cli.ts vchan --simulate
  deno run -A cli.ts vchan --server --domid 5 --port 1     # in dom0
  deno run -A cli.ts vchan --client --domid 0 --port 1     # in domain 5`,
};

/** Parsed options of the vchan command. */
export interface VchanCommandOptions {
  readonly role?: "server" | "client";
  readonly domid?: number;
  readonly path?: string;
  readonly port?: number;
  readonly readMin: number;
  readonly writeMin: number;
  readonly wait: boolean;
  readonly backend: BackendName;
  readonly simulate: boolean;
}

/** Turns parsed values into options; UsageError for a missing or conflicting option. */
export function vchanOptions(values: ParsedValues): VchanCommandOptions {
  const c = "vchan";
  const simulate = values.simulate === true;
  const server = values.server === true;
  const client = values.client === true;
  const size = (name: string) => intOption(c, name, values[name], 0, 0, 1 << 20);
  const common = { readMin: size("read-min"), writeMin: size("write-min") };
  if (simulate) {
    for (const name of ["server", "client", "domid", "path", "port", "wait", "backend"]) {
      if (values[name] !== undefined) {
        throw new UsageError(`xenchan vchan: --simulate takes no --${name}`);
      }
    }
    return { ...common, wait: false, backend: "sim", simulate };
  }
  if (server === client) {
    throw new UsageError(
      "xenchan vchan: give exactly one of --server and --client (or --simulate)\n" +
        "Run 'xenchan vchan --help' for usage.",
    );
  }
  if (values.domid === undefined) throw new UsageError("xenchan vchan: --domid is required");
  const domid = intOption(c, "domid", values.domid, 0, 0, 0x7fef);
  if ((values.path === undefined) === (values.port === undefined)) {
    throw new UsageError("xenchan vchan: give exactly one of --path and --port");
  }
  const path = values.path === undefined ? undefined : String(values.path);
  if (path !== undefined && (!path.startsWith("/") || path.endsWith("/"))) {
    throw new UsageError(`xenchan vchan: --path must be an absolute XenStore path, got '${path}'`);
  }
  const port = values.port === undefined
    ? undefined
    : intOption(c, "port", values.port, 0, 0, 0x7fffffff);
  if (values.wait && !client) throw new UsageError("xenchan vchan: --wait is for --client");
  const backend = backendOption(c, values.backend);
  if (backend === "sim") {
    throw new UsageError("xenchan vchan: --backend sim has no peer; use --simulate");
  }
  return {
    ...common,
    role: server ? "server" : "client",
    domid,
    path,
    port,
    wait: values.wait === true,
    backend,
    simulate,
  };
}

/** Where the command reads and writes its data (process stdio by default). */
export interface VchanStdio {
  readonly stdin: AsyncIterable<Uint8Array>;
  write(chunk: Uint8Array): Promise<void>;
}

function processStdio(): VchanStdio {
  return {
    stdin: process.stdin as AsyncIterable<Uint8Array>,
    write: (chunk) =>
      new Promise<void>((resolve, reject) =>
        process.stdout.write(chunk, (error) => (error ? reject(error) : resolve()))
      ),
  };
}

type StoreOpener = (options: { backend: XenBackend }) => Promise<VchanStore & Disposable>;

/** The XenStore client of mod.ts, when this build has it. */
function xenStoreOpener(): StoreOpener | undefined {
  const open = (api as Record<string, unknown>).openXenStore;
  return typeof open === "function" ? (open as StoreOpener) : undefined;
}

/**
 * Copies stdin into `vchan` and the vchan to stdout. Resolves when the peer
 * closed, or (`echo`: the peer sends back what it gets) when stdin is done
 * and as many bytes came back as went out.
 */
async function proxy(
  vchan: Vchan,
  stdio: VchanStdio,
  signal: AbortSignal,
  echo = false,
): Promise<void> {
  let sent = 0;
  const expected = echo ? () => sent : undefined;
  let received = 0;
  let inputDone = false;
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  const toStdout = (async () => {
    for (;;) {
      if (inputDone && expected && received >= expected()) return;
      let chunk: Uint8Array;
      try {
        chunk = await vchan.read(65536, { signal: stop.signal });
      } catch (error) {
        if (error instanceof VchanError && error.code === "ECONNRESET") return;
        throw error;
      }
      received += chunk.length;
      await stdio.write(chunk);
    }
  })();
  const fromStdin = (async () => {
    for await (const chunk of stdio.stdin) {
      await vchan.write(new Uint8Array(chunk), { signal: stop.signal });
      sent += chunk.length;
    }
    await vchan.drain({ signal: stop.signal });
    inputDone = true;
    if (expected && received >= expected()) stop.abort("done");
  })();
  try {
    await Promise.race([
      toStdout,
      fromStdin.then(() => toStdout),
      new Promise<void>((resolve) => stop.signal.addEventListener("abort", () => resolve())),
    ]);
  } finally {
    signal.removeEventListener("abort", onAbort);
    stop.abort("done");
    await Promise.allSettled([toStdout, fromStdin]);
  }
}

async function simulate(
  options: VchanCommandOptions,
  stdio: VchanStdio,
  out: Output,
  signal: AbortSignal,
): Promise<number> {
  const hv = new SimHypervisor();
  const guest = hv.createDomain();
  const path = vchanPath(0, guest, 1);
  // Each end talks to the simulator's xenstored with its own domain's identity.
  using store0 = await openXenStore({ backend: hv.backend(0) });
  using storeGuest = await openXenStore({ backend: hv.backend(guest) });
  await using server = await listenVchan({
    backend: hv.backend(0),
    store: store0,
    domid: guest,
    path,
    readMin: options.readMin,
    writeMin: options.writeMin,
  });
  await using client = await connectVchan({
    backend: hv.backend(guest),
    store: storeGuest,
    domid: 0,
    path,
  });
  out.err(
    `xenchan vchan: simulated echo server in dom0 at ${path} (rings ${server.readSize} and ` +
      `${server.writeSize} bytes), this end a client in simulated domain ${guest}`,
  );
  const echo = server.readable.pipeTo(server.writable).catch(() => {});
  await proxy(client, stdio, signal, true);
  client.close();
  await echo;
  return 0;
}

/**
 * Runs the command. Resolves to the exit status: 0 when the session ended
 * normally (peer closed, signal, or the self-test completed), 1 when the
 * vchan failed or the rendezvous was impossible (the reason on out.err).
 */
export async function runVchan(
  options: VchanCommandOptions,
  out: Output,
  signal: AbortSignal = new AbortController().signal,
  stdio: VchanStdio = processStdio(),
): Promise<number> {
  try {
    if (options.simulate) return await simulate(options, stdio, out, signal);
    const selection = await selectBackend(options.backend);
    if (selection.kind === "sim") {
      out.err(`xenchan vchan: not on Xen (${selection.reason}); use --simulate for a self-test`);
      return 1;
    }
    const openStore = xenStoreOpener();
    if (!openStore) {
      out.err(
        "xenchan vchan: this build has no XenStore client (openXenStore), which the rendezvous " +
          "needs on real Xen",
      );
      return 1;
    }
    using store = await openStore({ backend: selection.backend });
    const domid = options.domid!;
    const own = Number(await store.read("domid"));
    const path = options.path ??
      (options.role === "server"
        ? vchanPath(own, domid, options.port!)
        : vchanPath(domid, own, options.port!));
    const common = { backend: selection.backend, store, path, domid, peerCloseEndsStream: true };
    await using vchan = options.role === "server"
      ? await listenVchan({ ...common, readMin: options.readMin, writeMin: options.writeMin })
      : await connectVchan({ ...common, wait: options.wait, signal });
    out.err(`xenchan vchan: ${options.role} at ${path}, peer domain ${domid}`);
    if (options.role === "server") await vchan.connected({ signal });
    await proxy(vchan, stdio, signal);
    return 0;
  } catch (error) {
    if (signal.aborted) return 0;
    out.err(`xenchan vchan: ${(error as Error)?.message ?? String(error)}`);
    return 1;
  }
}
