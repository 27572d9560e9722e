/**
 * URLs of this layer's sibling modules (the Bun poll Worker script), in the
 * form the running copy of the project has: `.ts` in the sources (Deno, Bun,
 * JSR), `.js` in the npm package that tsc builds (see tsconfig.build.json).
 *
 * @module
 */

/**
 * Returns the URL of the module `name` (a path relative to `base`, without
 * extension, for example "./poll_worker") with the extension of `base`
 * itself, so a module's sibling resolves in the sources and in the built
 * package alike. `base` is the caller's `import.meta.url`.
 *
 * Returns a new absolute URL string; never throws for an absolute `base`
 * (throws TypeError from `new URL` for a relative one). Pure: no I/O.
 */
export function siblingModuleUrl(name: string, base: string): string {
  const path = new URL(base).pathname;
  const ext = /\.[cm]?[jt]s$/.exec(path)?.[0] ?? ".ts";
  return new URL(`${name}${ext}`, base).href;
}
