/**
 * The simulator's domains as a DomainEventSource: SimHypervisor's
 * onDomainEvent ("shutdown" with its reason, "death", "disk-eject" with its
 * vdev) and domainInfo, adapted structurally so this file imports nothing
 * from sim/ at run time. Also the simulator as the two dependencies of the
 * real source (xen_domains.ts): domain information and a @releaseDomain
 * watch, so that source's code runs on the simulator too.
 *
 * @module
 */
import { XenUsageError } from "../../core/errors.ts";
import { checkFunction, checkObject } from "../../core/validate.ts";
import type { DomainEventSource, DomainState, RawDomainEvent } from "./domain_events.ts";
import {
  type DomainInfoProvider,
  type DomainStatusLike,
  RELEASE_DOMAIN,
  type ReleaseDomainWatcher,
} from "./xen_domains.ts";

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

/** What simDomainInfo needs from SimHypervisor. */
export interface SimDomainListLike {
  domids(): number[];
  domainInfo(
    domid: number,
  ): { readonly state: string; readonly shutdownReason?: string } | undefined;
}

function simStatus(
  domid: number,
  info: { readonly state: string; readonly shutdownReason?: string },
): DomainStatusLike {
  const shutdown = info.state === "shutdown";
  const status = { domid, flags: { dying: false, shutdown } };
  if (!shutdown) return status;
  return { ...status, shutdownReason: REASON_CODES[info.shutdownReason ?? ""] ?? -1 };
}

/**
 * The simulator's domains as the domain information a XenDomainSource reads
 * (what DomainControl gives on real Xen): list() from domids() and
 * domainInfo(), info() from domainInfo(). The simulator has no handles, so
 * `handle` is left out. Throws nothing.
 */
export function simDomainInfo(hv: SimDomainListLike): DomainInfoProvider {
  return {
    list(): DomainStatusLike[] {
      const found: DomainStatusLike[] = [];
      for (const domid of hv.domids()) {
        const info = hv.domainInfo(domid);
        if (info) found.push(simStatus(domid, info));
      }
      return found;
    },
    info(domid: number): DomainStatusLike | undefined {
      const info = hv.domainInfo(domid);
      return info ? simStatus(domid, info) : undefined;
    },
  };
}

/**
 * A @releaseDomain watch on the simulator, for a XenDomainSource: it fires
 * where xenstored would, on each "shutdown" and "death" of onDomainEvent,
 * and once at registration (the initial event). A stand-in for the
 * simulated xenstored's own watch (SimHypervisor.xenstore) where that is not
 * available. Each watch() subscribes to the hypervisor and unsubscribes when
 * its signal aborts or its iterator returns. Only RELEASE_DOMAIN is
 * offered: another path throws XenUsageError.
 */
export function simReleaseDomainWatch(
  hv: Pick<SimDomainEventsLike, "onDomainEvent">,
): ReleaseDomainWatcher {
  return {
    watch(path: string, options: { readonly signal?: AbortSignal } = {}) {
      if (path !== RELEASE_DOMAIN) {
        throw new XenUsageError(
          `path: the simulated watch offers only ${RELEASE_DOMAIN}, got ${path}`,
        );
      }
      return releaseDomainEvents(hv, options.signal);
    },
  };
}

async function* releaseDomainEvents(
  hv: Pick<SimDomainEventsLike, "onDomainEvent">,
  signal: AbortSignal | undefined,
): AsyncGenerator<{ readonly path: string; readonly token: string }> {
  let pending = 1; // the initial event
  let wake: (() => void) | null = null;
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const unsubscribe = hv.onDomainEvent((event) => {
    if (event.type === "disk-eject") return;
    pending++;
    poke();
  });
  signal?.addEventListener("abort", poke, { once: true });
  try {
    while (!signal?.aborted) {
      if (pending === 0) {
        await new Promise<void>((resolve) => wake = resolve);
        continue;
      }
      pending--;
      yield { path: RELEASE_DOMAIN, token: "" };
    }
  } finally {
    unsubscribe();
    signal?.removeEventListener("abort", poke);
  }
}
