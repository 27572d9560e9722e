/**
 * The simulator's domains as a DomainEventSource: SimHypervisor's
 * onDomainEvent ("shutdown" with its reason, "death", "disk-eject" with its
 * vdev) and domainInfo, adapted structurally so this file imports nothing
 * from sim/ at run time.
 *
 * @module
 */
import { checkFunction, checkObject } from "../../core/validate.ts";
import type { DomainEventSource, DomainState, RawDomainEvent } from "./domain_events.ts";

/** What the adapter needs from sim/hypervisor.ts SimHypervisor. */
export interface SimDomainEventsLike {
  onDomainEvent(
    listener: (
      event:
        | { readonly type: "shutdown"; readonly domid: number; readonly reasonCode: number }
        | { readonly type: "death"; readonly domid: number }
        | { readonly type: "disk-eject"; readonly domid: number; readonly vdev: string },
    ) => void,
  ): () => void;
  domainInfo(
    domid: number,
  ): { readonly state: string; readonly shutdownReason?: string } | undefined;
}

const REASON_CODES: Readonly<Record<string, number>> = {
  poweroff: 0,
  reboot: 1,
  suspend: 2,
  crash: 3,
  watchdog: 4,
  soft_reset: 5,
};

/**
 * Adapts a SimHypervisor: pass the result as `domains` when creating an
 * EventContext. Throws XenUsageError for an `hv` without onDomainEvent()
 * and domainInfo(); the context subscribes when it is created and
 * unsubscribes when it closes.
 */
export function simDomainSource(hv: SimDomainEventsLike): DomainEventSource {
  checkObject("hv", hv);
  checkFunction("hv.onDomainEvent", hv.onDomainEvent);
  checkFunction("hv.domainInfo", hv.domainInfo);
  return {
    subscribe(listener: (event: RawDomainEvent) => void): () => void {
      return hv.onDomainEvent((event) => {
        switch (event.type) {
          case "shutdown":
            listener({ type: "shutdown", domid: event.domid, reasonCode: event.reasonCode });
            break;
          case "death":
            listener({ type: "death", domid: event.domid });
            break;
          case "disk-eject":
            listener({ type: "disk-eject", domid: event.domid, vdev: event.vdev });
            break;
        }
      });
    },
    domainState(domid: number): DomainState | undefined {
      const info = hv.domainInfo(domid);
      if (!info) return undefined;
      if (info.state !== "shutdown") return {};
      return { shutdownReason: REASON_CODES[info.shutdownReason ?? ""] ?? -1 };
    },
  };
}
