/**
 * Assertion helpers for typed errors.
 *
 * @module
 */
import assert from "node:assert/strict";
import { XenCallError } from "../../core/errors.ts";

/**
 * A validator for assert.throws: the error is a XenCallError from C
 * function `call` with errno name `code`.
 */
export function callFailed(call: string, code: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof XenCallError, `expected XenCallError, got ${error}`);
    assert.equal(error.call, call);
    assert.equal(error.code, code);
    return true;
  };
}
