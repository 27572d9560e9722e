/**
 * The lanes the XenStore contract suite runs on. Every test is written once
 * and runs on each lane; a lane is a (daemon, transport) pair, tagged in test
 * names by laneTag():
 *
 * - "xenstore:sim": the simulated xenstored, a fresh SimHypervisor per test,
 *   connected as dom0 through the simulated domain backend; unprivileged
 *   (guest) connections come from simulated domains.
 * - "xenstore:sim-socket": the same simulated xenstored served on a unix
 *   socket (serveXenStoreSocket) and reached through the real socket
 *   transport (connectXenStoreSocket): the socket lane's code on any host.
 * - "xenstore:socket": the real daemon's unix socket (ffi connectXenStoreSocket).
 * - "xenstore:xenbus": the real daemon through /dev/xen/xenbus (ffi openXenbus).
 *
 * Selection: XENCHAN_TEST_BACKENDS (comma list, as for the other contract
 * suites) with "sim" for the simulator lane and "ffi" for the real lanes;
 * XENCHAN_XENSTORE_TRANSPORTS (default "socket,xenbus") narrows the real
 * lanes. XENCHAN_XENSTORED ("oxenstored" or "cxenstored") names the real
 * daemon for the per-daemon expectations; unset, it is read from
 * /proc/<pid>/comm ("oxenstored", or "xenstored" for C xenstored), else it
 * is "unknown".
 *
 * @module
 */
import process from "node:process";
import { readdirSync, readFileSync } from "node:fs";
import { type XenBackend, XenStore } from "../../mod.ts";
import { SimHypervisor } from "../../sim/mod.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  connectXenStoreSocket,
  openXenbus,
  serveXenStoreSocket,
  xenstoredSocketPath,
} from "../../ffi/mod.ts";

/** Which xenstored answers. */
export type XenStoreDaemon = "sim" | "oxenstored" | "cxenstored" | "unknown";

/** Which lane. */
export type XenStoreLaneName = "sim" | "sim-socket" | "socket" | "xenbus";

/** An unprivileged connection of a simulated guest domain. */
export interface GuestConnection {
  readonly domid: number;
  readonly store: XenStore;
  /** Destroys the guest's domain (its connections end). */
  destroy(): void;
}

/** What one test gets: fresh connections and a fresh directory. */
export interface LaneSession extends AsyncDisposable {
  /** A privileged dom0 connection. */
  readonly store: XenStore;
  /** A fresh absolute directory for this test (created, removed at the end). */
  readonly base: string;
  /** Another dom0 connection (closed at the end). */
  open(): Promise<XenStore>;
  /** An unprivileged guest connection, when the lane can make one (the simulator). */
  readonly guest?: () => Promise<GuestConnection>;
}

/** One lane of the suite. */
export interface XenStoreLane {
  readonly name: XenStoreLaneName;
  readonly daemon: XenStoreDaemon;
  /** A reason to skip every test of this lane, or false to run them. */
  readonly skip: string | false;
  /** The request payload limit of the lane's transport. */
  readonly maxRequestPayload: number;
  /** A fresh session for one test. */
  session(): Promise<LaneSession>;
}

/**
 * The lane's tag in test names (scripts/lib/junit.mjs LANE_TAG): "xenstore:sim",
 * "xenstore:sim socket", or "xenstore:<daemon> <transport>" on real Xen.
 */
export function laneTag(lane: XenStoreLane): string {
  if (lane.name === "sim") return "xenstore:sim";
  if (lane.name === "sim-socket") return "xenstore:sim socket";
  return `xenstore:${lane.daemon} ${lane.name}`;
}

function requested(name: string, fallback: string): Set<string> {
  const list = process.env[name] ?? fallback;
  return new Set(list.split(",").map((s) => s.trim()).filter(Boolean));
}

/**
 * The real daemon's name: XENCHAN_XENSTORED, else what /proc says, else
 * "unknown" (the per-daemon expectations then fail, asking for the variable).
 */
export function realDaemon(): XenStoreDaemon {
  const named = process.env.XENCHAN_XENSTORED;
  if (named === "oxenstored" || named === "cxenstored") return named;
  try {
    for (const pid of readdirSync("/proc")) {
      if (!/^[0-9]+$/.test(pid)) continue;
      let comm: string;
      try {
        comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        continue;
      }
      if (comm === "oxenstored") return "oxenstored";
      if (comm === "xenstored") return "cxenstored";
    }
  } catch {
    // No /proc: unknown.
  }
  return "unknown";
}

let sessionCounter = 0;

function simLane(): XenStoreLane {
  const probe = new SimHypervisor().backend(0) as XenBackend;
  const skip = typeof probe.openXenStoreTransport === "function"
    ? false
    : "this simulator has no XenStore (SimDomainBackend.openXenStoreTransport)";
  return {
    name: "sim",
    daemon: "sim",
    skip,
    maxRequestPayload: 4096,
    async session() {
      const hv = new SimHypervisor();
      const connect = async (domid: number) =>
        new XenStore(await (hv.backend(domid) as XenBackend).openXenStoreTransport!());
      return await makeSession(() => connect(0), "/test", async () => {
        const domid = hv.createDomain();
        return { domid, store: await connect(domid), destroy: () => hv.destroy(domid) };
      });
    },
  };
}

function simSocketLane(): XenStoreLane {
  return {
    name: "sim-socket",
    daemon: "sim",
    skip: false,
    maxRequestPayload: 4096,
    async session() {
      const hv = new SimHypervisor();
      const dir = mkdtempSync(join(tmpdir(), "xenchan-xs-lane-"));
      const servers = [await serveXenStoreSocket(hv.xenstore, join(dir, "dom0"))];
      const connect = async (path: string) => new XenStore(await connectXenStoreSocket({ path }));
      const session = await makeSession(() => connect(servers[0].path), "/test", async () => {
        const domid = hv.createDomain();
        const server = await serveXenStoreSocket(hv.xenstore, join(dir, `dom${domid}`), { domid });
        servers.push(server);
        return { domid, store: await connect(server.path), destroy: () => hv.destroy(domid) };
      });
      return {
        ...session,
        async [Symbol.asyncDispose]() {
          await session[Symbol.asyncDispose]();
          for (const server of servers) await server.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

function realLane(name: "socket" | "xenbus", skip: string | false): XenStoreLane {
  const connect = async () =>
    new XenStore(name === "socket" ? await connectXenStoreSocket() : await openXenbus());
  return {
    name,
    daemon: realDaemon(),
    skip,
    maxRequestPayload: name === "socket" ? 4096 : 4080,
    session: () => makeSession(connect, `/xenchan-test/${process.pid}-${++sessionCounter}`),
  };
}

async function makeSession(
  connect: () => Promise<XenStore>,
  base: string,
  guest?: () => Promise<GuestConnection>,
): Promise<LaneSession> {
  const store = await connect();
  const others: XenStore[] = [];
  const guests: GuestConnection[] = [];
  await store.mkdir(base);
  return {
    store,
    base,
    async open() {
      const other = await connect();
      others.push(other);
      return other;
    },
    guest: guest &&
      (async () => {
        const g = await guest();
        guests.push(g);
        return g;
      }),
    async [Symbol.asyncDispose]() {
      for (const g of guests) g.store.close();
      for (const o of others) o.close();
      if (!store.closed) await store.rm(base).catch(() => {});
      store.close();
    },
  };
}

async function whyNoRealLane(name: "socket" | "xenbus"): Promise<string | false> {
  try {
    const transport = name === "socket" ? await connectXenStoreSocket() : await openXenbus();
    const store = new XenStore(transport);
    try {
      await store.getDomainPath(0);
    } finally {
      store.close();
    }
    return false;
  } catch (error) {
    const where = name === "socket" ? xenstoredSocketPath() : "/dev/xen/xenbus";
    return `no usable xenstored over ${where}: ${(error as Error).message}`;
  }
}

/** The lanes, in the order sim, socket, xenbus. */
export async function xenstoreLanes(): Promise<XenStoreLane[]> {
  const backends = requested("XENCHAN_TEST_BACKENDS", "sim,ffi");
  const lanes: XenStoreLane[] = [];
  if (backends.has("sim")) lanes.push(simLane(), simSocketLane());
  if (backends.has("ffi")) {
    const transports = requested("XENCHAN_XENSTORE_TRANSPORTS", "socket,xenbus");
    for (const name of ["socket", "xenbus"] as const) {
      if (transports.has(name)) lanes.push(realLane(name, await whyNoRealLane(name)));
    }
  }
  return lanes;
}
