// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/console.mjs - the console protocol between dom0's /init and the host.
//
// What it does: defines the marker lines /init prints on hvc0 (which Xen copies to the
// serial log) and parses a serial log back into an exit status and result files.
//
// Protocol (each marker starts anywhere on a line; NONCE is unique per run):
//   @@XENCHAN:START:NONCE@@                      dom0 is up, the run script starts
//   @@XENCHAN:FILE:NONCE:SIZE:MD5:NAME@@         a result file follows (NAME relative to /out)
//   @@XENCHAN:B64:NONCE:<base64 line>            its bytes, one base64 line per marker
//   @@XENCHAN:END:NONCE@@                        end of that file
//   @@XENCHAN:EXIT:NONCE:STATUS@@                the run script's exit status; poweroff follows
//
// parseConsole(text, nonce) returns { started, status, files: Map<name, Buffer>, errors: string[],
// dom0Lines: string[] } and never throws: a damaged file (size or md5 mismatch) is reported in
// errors and left out of files.

import crypto from "node:crypto";

export const TAG = "@@XENCHAN:";

/** Returns the shell lines /init uses to print the markers (sh syntax, $XENCHAN_NONCE set). */
export function markerShell() {
  return {
    start: `echo "${TAG}START:$XENCHAN_NONCE@@"`,
    file: `echo "${TAG}FILE:$XENCHAN_NONCE:$size:$sum:$name@@"`,
    b64: `base64 "$f" | sed "s/^/${TAG}B64:$XENCHAN_NONCE:/"`,
    end: `echo "${TAG}END:$XENCHAN_NONCE@@"`,
    exit: `echo "${TAG}EXIT:$XENCHAN_NONCE:$status@@"`,
  };
}

/** Parses a serial log (see the file comment). */
export function parseConsole(text, nonce) {
  const out = { started: false, status: null, files: new Map(), errors: [], dom0Lines: [] };
  let current = null;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r/g, "");
    const at = line.indexOf(TAG);
    if (at < 0) {
      if (out.started && out.status === null && current === null) out.dom0Lines.push(line);
      continue;
    }
    const marker = parseMarker(line.slice(at + TAG.length), nonce);
    if (!marker) continue;
    if (marker.kind === "START") out.started = true;
    else if (marker.kind === "EXIT") out.status = marker.status;
    else if (marker.kind === "FILE") current = { ...marker, chunks: [] };
    else if (marker.kind === "B64" && current) current.chunks.push(marker.data);
    else if (marker.kind === "END" && current) {
      finishFile(current, out);
      current = null;
    }
  }
  if (current) out.errors.push(`result file ${current.name}: no end marker (output cut off)`);
  return out;
}

function parseMarker(rest, nonce) {
  const colon = rest.indexOf(":");
  if (colon < 0) return null;
  const kind = rest.slice(0, colon);
  const body = rest.slice(colon + 1);
  if (!body.startsWith(nonce + (kind === "START" || kind === "END" ? "@@" : ":"))) return null;
  const args = body.slice(nonce.length + 1);
  if (kind === "START" || kind === "END") return { kind };
  if (kind === "B64") return { kind, data: args.trim() };
  const fields = args.replace(/@@\s*$/, "");
  if (kind === "EXIT") return { kind, status: Number.parseInt(fields, 10) };
  if (kind === "FILE") {
    const m = fields.match(/^\s*(\d+)\s*:([0-9a-f]{32}):(.+)$/);
    return m ? { kind, size: Number(m[1]), md5: m[2], name: m[3] } : null;
  }
  return null;
}

function finishFile(file, out) {
  const bytes = Buffer.from(file.chunks.join(""), "base64");
  const md5 = crypto.createHash("md5").update(bytes).digest("hex");
  if (bytes.length !== file.size || md5 !== file.md5) {
    out.errors.push(
      `result file ${file.name}: got ${bytes.length} bytes md5 ${md5}, ` +
        `dom0 sent ${file.size} bytes md5 ${file.md5} (console output damaged)`,
    );
    return;
  }
  out.files.set(file.name, bytes);
}
