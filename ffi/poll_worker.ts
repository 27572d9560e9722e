/**
 * Bun only: the Worker that waits in poll(2) for the main thread, because
 * bun:ffi has no nonblocking calls. It receives {fds, count, timeoutMs},
 * polls, and replies {result, fds} with the revents filled in. It never
 * calls anything but poll, so the main thread stays the only reader of every
 * event channel handle.
 *
 * @module
 */
import { openBun } from "./bun.ts";
import { LIBC_WAIT } from "./symbols.ts";

interface PollRequest {
  readonly fds: ArrayBuffer;
  readonly count: number;
  readonly timeoutMs: number;
}

const libc = openBun("libc.so.6", LIBC_WAIT);
const scope = self as unknown as {
  onmessage: (event: MessageEvent<PollRequest>) => void;
  postMessage(message: unknown, transfer: Transferable[]): void;
};

scope.onmessage = async (event) => {
  const fds = new Uint8Array(event.data.fds);
  const result = await libc.symbols.poll(fds, BigInt(event.data.count), event.data.timeoutMs);
  scope.postMessage({ result, fds: fds.buffer }, [fds.buffer]);
};
