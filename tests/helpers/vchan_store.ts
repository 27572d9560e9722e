/**
 * The in-memory XenStore the vchan tests use (it lives with the vchan
 * plugin because `xenchan vchan --simulate` uses it too).
 *
 * @module
 */
export { MemoryStoreConnection, MemoryXenStore } from "../../plugins/vchan/memory_store.ts";
