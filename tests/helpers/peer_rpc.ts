/**
 * PeerCommands over XenStore, between a test in dom0 and the agent in a
 * guest (tests/fixtures/domu_agent.ts). Both ends use the project's
 * XenStore client: dom0 over xenstored's socket, the guest over
 * /dev/xen/xenbus. The nodes live under the guest's
 * /local/domain/<g>/xenchan/rpc, which dom0 creates and hands to the guest
 * (owner g, so both ends read and write it):
 *   agent  the agent process's token, written when it starts (a new token
 *          after a kill tells dom0 the fresh process is up);
 *   req    {"seq": n, "cmd": PeerCommand} written by dom0;
 *   res    {"seq": n, "outcome": PeerOutcome} written by the agent.
 * Each side waits with a watch on the node it reads plus a read every
 * POLL_MS (a lost watch event costs a poll, never a hang), and every wait is
 * bounded.
 *
 * @module
 */
import { type XenStore, XenStoreError } from "../../mod.ts";
import {
  type Peer,
  type PeerCommand,
  PeerError,
  type PeerExecutor,
  peerMethods,
  type PeerOutcome,
} from "./peer.ts";

const POLL_MS = 250;

/** The RPC directory of guest `domid`. */
export function rpcBase(domid: number): string {
  return `/local/domain/${domid}/xenchan/rpc`;
}

/** The value at `path`, or undefined when it does not exist or cannot be read. */
async function tryRead(xs: XenStore, path: string): Promise<string | undefined> {
  try {
    return await xs.read(path);
  } catch (error) {
    if (error instanceof XenStoreError) return undefined;
    throw error;
  }
}

/**
 * Waits until `accept(value)` returns non-undefined for the value at
 * `path`, reading it on each watch event and every POLL_MS; resolves with
 * what accept returned. Rejects with PeerError {name: "Timeout"} after
 * `timeoutMs`.
 */
export async function waitForNode<T>(
  xs: XenStore,
  path: string,
  accept: (value: string | undefined) => T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const stop = new AbortController();
  const events = xs.watch(path, { signal: stop.signal });
  let next: Promise<unknown> | undefined;
  const end = Date.now() + timeoutMs;
  try {
    for (;;) {
      const got = accept(await tryRead(xs, path));
      if (got !== undefined) return got;
      if (Date.now() > end) {
        throw new PeerError({
          name: "Timeout",
          code: null,
          message: `${what}: nothing at ${path} within ${timeoutMs} ms`,
        });
      }
      next ??= events.next().then(() => (next = undefined), () => (next = undefined));
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([next, new Promise((r) => (timer = setTimeout(r, POLL_MS)))]);
      clearTimeout(timer);
    }
  } finally {
    stop.abort();
  }
}

/** Options of connectRpcPeer. */
export interface RpcPeerOptions {
  /** Bound of one command's answer, beyond its own wait (default 60 s). */
  readonly callTimeoutMs?: number;
  /** Bound of the agent's (re)start (default 120 s). */
  readonly startTimeoutMs?: number;
}

/**
 * dom0's side: creates the guest's RPC directory with the guest as owner,
 * waits (bounded) for the agent's token and a ping, and returns the Peer.
 * The caller keeps `xs` open while it uses the peer, and closes it.
 * Rejects with PeerError {name: "Timeout"} when the agent does not come up.
 */
export async function connectRpcPeer(
  xs: XenStore,
  domid: number,
  options: RpcPeerOptions = {},
): Promise<Peer> {
  const base = rpcBase(domid);
  const callTimeout = options.callTimeoutMs ?? 60_000;
  const startTimeout = options.startTimeoutMs ?? 120_000;
  await xs.mkdir(base);
  await xs.setPermissions(base, [{ domid, access: "none" }]);
  let seq = Number(await tryRead(xs, `${base}/res`).then((v) => v && JSON.parse(v).seq)) || 0;
  let token = await waitForNode(xs, `${base}/agent`, (v) => v || undefined, startTimeout, "agent");

  const call = async (cmd: PeerCommand): Promise<PeerOutcome> => {
    const mine = ++seq;
    await xs.write(`${base}/req`, JSON.stringify({ seq: mine, cmd }));
    const extra = cmd.op === "pending" ? cmd.timeoutMs : 0;
    return await waitForNode(
      xs,
      `${base}/res`,
      (v) => {
        if (!v) return undefined;
        const r = JSON.parse(v) as { seq: number; outcome: PeerOutcome };
        return r.seq === mine ? r.outcome : undefined;
      },
      callTimeout + extra,
      `answer to ${cmd.op}`,
    );
  };
  const kill = async () => {
    const old = token;
    await xs.write(`${base}/req`, JSON.stringify({ seq: ++seq, cmd: { op: "kill" } }));
    token = await waitForNode(
      xs,
      `${base}/agent`,
      (v) => (v && v !== old ? v : undefined),
      startTimeout,
      "the restarted agent",
    );
    await ping();
  };
  const ping = async () => {
    const r = await call({ op: "ping" });
    if (!r.ok || r.value !== "pong") {
      throw new PeerError({ name: "NoAgent", code: null, message: JSON.stringify(r) });
    }
  };
  await ping();
  return peerMethods(domid, call, kill);
}

/**
 * The guest's side: announces the agent with a fresh token (retrying until
 * dom0 has handed over the directory, at most `startTimeoutMs`), then
 * executes each new request with `executor` and writes its answer, forever.
 * A "kill" request kills the process at once (SIGKILL, no cleanup in the
 * process: the kernel releases its handles). A request already in `req`
 * when the agent starts is executed unless it is that kill.
 * Rejects when the store fails or the start times out.
 */
export async function serveRpcPeer(
  xs: XenStore,
  domid: number,
  executor: PeerExecutor,
  die: () => never,
  startTimeoutMs = 120_000,
): Promise<never> {
  const base = rpcBase(domid);
  const token = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const end = Date.now() + startTimeoutMs;
  for (;;) {
    try {
      await xs.write(`${base}/agent`, token);
      break;
    } catch (error) {
      if (!(error instanceof XenStoreError) || Date.now() > end) throw error;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
  const first = await tryRead(xs, `${base}/req`);
  let last = -1;
  if (first) {
    const r = JSON.parse(first) as { seq: number; cmd: PeerCommand };
    if (r.cmd.op === "kill") last = r.seq;
  }
  for (;;) {
    const req = await waitForNode(
      xs,
      `${base}/req`,
      (v) => {
        if (!v) return undefined;
        const r = JSON.parse(v) as { seq: number; cmd: PeerCommand };
        return r.seq !== last ? r : undefined;
      },
      24 * 3600_000,
      "request",
    );
    last = req.seq;
    if (req.cmd.op === "kill") die();
    const outcome = await executor.execute(req.cmd);
    await xs.write(`${base}/res`, JSON.stringify({ seq: req.seq, outcome }));
  }
}
