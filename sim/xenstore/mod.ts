/**
 * The simulated xenstored (C xenstored 4.17 semantics): the store every
 * SimHypervisor owns as `hv.xenstore`, and its client connections.
 *
 * @module
 */
export { type SimWatch, SimXenStoreConnection } from "./connection.ts";
export {
  SimXenStore,
  type SimXenStoreConnectionInfo,
  type SimXenStoreLimits,
  type SimXenStoreNodeInfo,
  type SimXenStoreOptions,
  type SimXenStoreQuotas,
  type SimXenStoreStats,
  XENSTORED_DEFAULT_QUOTAS,
} from "./xenstored.ts";
