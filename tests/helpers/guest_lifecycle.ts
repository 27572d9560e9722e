/**
 * The guest harness of tests/dom0/domain_events_guest.test.ts over the real
 * guest launcher (tests/helpers/guest.ts): busybox guests (`--runtime none`,
 * 128 MB) created with on_poweroff, on_reboot and on_crash = "preserve", so
 * the toolstack never destroys or restarts them behind the test's back.
 * Each guest runs a small loop that polls its XenStore node xenchan/action
 * (written by dom0 with xenstore-write) and powers off (`poweroff -f`),
 * reboots (`reboot -f`) or crashes its kernel (`echo c >
 * /proc/sysrq-trigger`) when told. One guest at a time (the vCPU rule): the
 * test destroys each before the next.
 *
 * Default export: `() => Promise<GuestHarness>`; rejects when guests
 * cannot be used here (whyNoGuests()).
 *
 * @module
 */
import { runCommand, type RunningGuest, startGuest, whyNoGuests } from "./guest.ts";

/** The shape the lifecycle test expects (see tests/dom0/domain_events_guest.test.ts). */
export interface GuestHarness {
  create(name: string): Promise<number>;
  poweroff(domid: number): Promise<void>;
  reboot(domid: number): Promise<void>;
  crash(domid: number): Promise<void>;
  destroy(domid: number): Promise<void>;
}

/** The guest's command: waits for an action and carries it out (bounded by the guest's life). */
const ACTION_LOOP = "echo waiting-for-action; while :; do " +
  "a=$(xenstore-read xenchan/action 2>/dev/null); " +
  'case "$a" in poweroff) sync; poweroff -f ;; reboot) sync; reboot -f ;; ' +
  "crash) echo c > /proc/sysrq-trigger ;; esac; sleep 0.2; done";

/** Makes the harness. Rejects when this is not a dom0 booted with guests. */
export default function guestHarness(): Promise<GuestHarness> {
  const why = whyNoGuests();
  if (why) return Promise.reject(new Error(why));
  const guests = new Map<number, RunningGuest>();
  const act = async (domid: number, action: string) => {
    const r = await runCommand([
      "timeout",
      "20",
      "xenstore-write",
      `/local/domain/${domid}/xenchan/action`,
      action,
    ]);
    if (r.code !== 0) throw new Error(`xenstore-write action ${action} for d${domid}: ${r.stderr}`);
  };
  return Promise.resolve({
    async create(name) {
      const guest = await startGuest(ACTION_LOOP, {
        runtime: "none",
        name,
        onShutdown: "preserve",
        timeoutS: 120,
      });
      guests.set(guest.domid, guest);
      return guest.domid;
    },
    poweroff: (domid) => act(domid, "poweroff"),
    reboot: (domid) => act(domid, "reboot"),
    crash: (domid) => act(domid, "crash"),
    async destroy(domid) {
      const guest = guests.get(domid);
      guests.delete(domid);
      if (guest) await guest.destroy();
      else await runCommand(["timeout", "30", "xl", "destroy", String(domid)]);
    },
  });
}
