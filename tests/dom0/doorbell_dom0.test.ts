/**
 * The doorbell -> event channel bridge on REAL Xen (dom0 loopback): the
 * ivshmem device model's matching doorbell write becomes a real
 * xenevtchn_notify, and the peer handle's pending() returns its port; a
 * non-matching write reaches the I/O callback and sends nothing. Skipped off
 * Xen (the reason says why); run inside dom0 by `npm run test:xen`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type EventChannels, openEventChannels } from "../../mod.ts";
import {
  EventChannelNotifier,
  EventFdNotifier,
  IvshmemDoorbell,
} from "../../plugins/doorbell/mod.ts";
import { deadline, sleep, whyNoXen } from "../helpers/xen.ts";

const skip = (await whyNoXen()) ?? false;
const ffi = { backend: "ffi" } as const;

/** A dom0 loopback channel: the device model's port and the peer handle's port. */
interface Channel {
  readonly peer: EventChannels;
  readonly peerPort: number;
  readonly devicePort: number;
}

async function channel(device: EventChannels, peer: EventChannels): Promise<Channel> {
  const peerPort = peer.bindUnboundPort(0);
  const devicePort = device.bindInterdomain(0, peerPort);
  // Xen raises the binder's new port once: consume it so it cannot be mistaken for a doorbell.
  assert.equal(await device.pending({ signal: deadline() }), devicePort);
  device.unmask(devicePort);
  return { peer, peerPort, devicePort };
}

describe("doorbell -> real event channels in dom0", () => {
  it(
    "a hit wakes the peer through Xen; a non-matching write reaches the callback and sends nothing",
    { skip },
    async () => {
      await using device = await openEventChannels(ffi);
      await using peer = await openEventChannels(ffi);
      const ch = await channel(device, peer);
      const unmatched: bigint[] = [];
      using dev = new IvshmemDoorbell({ onWrite: (_addr, data) => unmatched.push(data) });
      dev.setPeer(1, [new EventChannelNotifier(device, ch.devicePort)]);

      assert.equal(dev.ring(1, 1), "callback");
      assert.equal(dev.write(12, 0x10000n, 8), "callback"); // the right value as an 8-byte write
      await sleep(50);
      assert.equal(peer.tryPending(), null, "no event after non-matching writes");
      assert.deepEqual(unmatched, [0x10001n, 0x10000n]);

      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      try {
        const waiting = peer.pending({ signal: deadline() });
        await sleep(20);
        assert.equal(dev.ring(1, 0), "notified");
        assert.equal(await waiting, ch.peerPort);
        assert.ok(ticks > 0, "the event loop kept running while the peer waited");
      } finally {
        clearInterval(timer);
      }
      peer.unmask(ch.peerPort);
      assert.equal(unmatched.length, 2, "the hit did not reach the callback");
    },
  );

  it("several peers and vectors map to distinct real ports; each ring reaches only its own port", {
    skip,
  }, async () => {
    await using device = await openEventChannels(ffi);
    await using peerA = await openEventChannels(ffi);
    await using peerB = await openEventChannels(ffi);
    const peers = [peerA, peerB];
    const channels: Channel[][] = [];
    for (const peer of peers) {
      channels.push([await channel(device, peer), await channel(device, peer)]);
    }
    using dev = new IvshmemDoorbell();
    channels.forEach((vectors, i) => {
      dev.setPeer(i + 1, vectors.map((c) => new EventChannelNotifier(device, c.devicePort)));
    });
    for (const [p, v] of [[1, 0], [2, 1], [1, 1], [2, 0]]) {
      assert.equal(dev.ring(p, v), "notified");
      const target = channels[p - 1][v];
      assert.equal(await target.peer.pending({ signal: deadline() }), target.peerPort);
      target.peer.unmask(target.peerPort);
      await sleep(20);
      for (const other of peers) {
        assert.equal(other.tryPending(), null, `ring(${p}, ${v}) sent one event only`);
      }
    }
  });

  it(
    "one device, two kinds of notifier: an eventfd vector and an event channel vector",
    { skip },
    async () => {
      await using device = await openEventChannels(ffi);
      await using peer = await openEventChannels(ffi);
      const ch = await channel(device, peer);
      using efd = await EventFdNotifier.create();
      using dev = new IvshmemDoorbell();
      dev.setPeer(3, [new EventChannelNotifier(device, ch.devicePort), efd]);
      assert.equal(dev.ring(3, 1), "notified");
      assert.equal(await efd.wait({ signal: deadline() }), 1n);
      await sleep(20);
      assert.equal(peer.tryPending(), null);
      assert.equal(dev.ring(3, 0), "notified");
      assert.equal(await peer.pending({ signal: deadline() }), ch.peerPort);
      assert.equal(efd.read(), null);
    },
  );
});
