/**
 * XenStore node permissions: the typed form and the wire form "n0 r5".
 *
 * A node's permission list is ordered. Entry 0 names the owner and gives the
 * default access for every domain not listed; entries 1..n give access to
 * one domain each (docs/misc/xenstore.txt:175-186; C xenstored
 * perm_for_conn, xenstored_core.c:861-879: a privileged connection, the
 * owner and the owner's target get everything, otherwise the first entry
 * 1..n matching the domain applies, else entry 0's access).
 *
 * @module
 */
import { XenUsageError } from "../errors.ts";

/** Access a domain has: none, read, write, or both. */
export type XenStoreAccess = "none" | "read" | "write" | "both";

/** One permission entry. */
export interface XenStorePermission {
  readonly domid: number;
  readonly access: XenStoreAccess;
}

const LETTER_OF: Readonly<Record<XenStoreAccess, string>> = {
  none: "n",
  read: "r",
  write: "w",
  both: "b",
};
const ACCESS_OF: Readonly<Record<string, XenStoreAccess>> = {
  n: "none",
  r: "read",
  w: "write",
  b: "both",
};

/** The largest domain id a permission may name (DOMID_MASK 0x7fff plus the special ids). */
const DOMID_MAX = 0xffff;

/**
 * Parses one wire entry such as "r5" (xs_strings_to_perms,
 * tools/xenstore/xs_lib.c:108-143). Throws XenUsageError for an unknown
 * letter or a domid that is not a decimal number in 0..65535.
 */
export function parsePermission(text: string): XenStorePermission {
  const access = ACCESS_OF[text.charAt(0)];
  const digits = text.slice(1);
  if (access === undefined || !/^[0-9]{1,5}$/.test(digits) || Number(digits) > DOMID_MAX) {
    throw new XenUsageError(
      `a XenStore permission is a letter n, r, w or b and a domid, got ${JSON.stringify(text)}`,
    );
  }
  return { domid: Number(digits), access };
}

/** Formats one entry for the wire: { domid: 5, access: "read" } -> "r5". */
export function formatPermission(permission: XenStorePermission): string {
  return `${LETTER_OF[permission.access]}${permission.domid}`;
}

/**
 * Parses a space- or NUL-separated list ("n0 r5"); throws XenUsageError as
 * parsePermission, and for an empty list (a node always has an owner).
 */
export function parsePermissions(text: string): XenStorePermission[] {
  const parts = text.split(/[\s\0]+/).filter((p) => p.length > 0);
  if (parts.length === 0) throw new XenUsageError("a XenStore permission list cannot be empty");
  return parts.map(parsePermission);
}

/** Formats a list in the "n0 r5" form. */
export function formatPermissions(permissions: readonly XenStorePermission[]): string {
  return permissions.map(formatPermission).join(" ");
}

/**
 * Checks a caller's permission list: a non-empty array of { domid, access }
 * with integer domids 0..65535 and a known access word. Throws XenUsageError
 * naming the bad entry. Returns the list unchanged.
 */
export function checkPermissions(
  permissions: unknown,
  name = "permissions",
): readonly XenStorePermission[] {
  if (!Array.isArray(permissions) || permissions.length === 0) {
    throw new XenUsageError(`${name} must be a non-empty array of { domid, access }`);
  }
  permissions.forEach((p, i) => {
    const entry = p as Partial<XenStorePermission> | null;
    if (
      typeof entry !== "object" || entry === null || !Number.isInteger(entry.domid) ||
      (entry.domid as number) < 0 || (entry.domid as number) > DOMID_MAX ||
      !(typeof entry.access === "string" && entry.access in LETTER_OF)
    ) {
      throw new XenUsageError(
        `${name}[${i}] must be { domid: 0..65535, access: "none"|"read"|"write"|"both" }`,
      );
    }
  });
  return permissions as readonly XenStorePermission[];
}
