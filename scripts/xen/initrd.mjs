// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/initrd.mjs - builds the dom0 initrd as concatenated newc cpio archives.
//
// What it does: Linux unpacks concatenated cpio archives in order, so the initrd is
//   base.cpio      busybox + applet links, /init, the Xen kernel modules, and the glibc and
//                  libxen* libraries that ldd finds for deno, bun and the C bench binaries
//                  (cached in <cache>/initrd/, rebuilt only when an input changes)
//   runtimes.cpio  the real deno and bun ELF binaries at /usr/local/bin (cached likewise)
//   run.cpio       per run: the project source under /xenchan, the C binaries at
//                  /usr/local/bin, /xenchan-run.sh and /xenchan-run.env (small)
// /init (dom0): mounts proc, sys, devtmpfs, devpts, tmpfs; insmods the modules; prints the START
// marker; runs /xenchan-run.sh in /xenchan under `timeout`, its output teed to /out/run.log; prints
// every file under /out base64-encoded between markers, then the EXIT marker; `poweroff -f`.
// Environment in dom0: PATH, LD_LIBRARY_PATH, HOME=/tmp, DENO_DIR=/tmp/deno, NO_COLOR=1,
// XENCHAN_DOM0=1, XENCHAN_OUT=/out (the run script writes its result files there).
//
// Exports: resolveRuntimes(), buildBase(), buildRuntimes(), buildRun(), concatFiles().
// Errors: HarnessError naming the missing input or the failed command.

import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { $ } from "zx";
import { CACHE, HarnessError, PROJECT_PATHS, REPO, XEN_MODULES, XEN_SONAMES } from "./config.mjs";
import { markerShell } from "./console.mjs";

const DIR = path.join(CACHE, "initrd");

/** Finds the real deno and bun ELF files in node_modules; returns { deno, bun } paths. */
export function resolveRuntimes() {
  const candidates = {
    deno: [".bin/deno", "@deno/linux-x64-glibc/deno", "deno/deno"],
    bun: [".bin/bun", "@oven/bun-linux-x64/bin/bun", "bun/bin/bun.exe"],
  };
  const found = {};
  for (const [name, rels] of Object.entries(candidates)) {
    const hit = rels.map((r) => path.join(REPO, "node_modules", r)).find(isElf);
    if (!hit) {
      throw new HarnessError(`no ${name} ELF binary in node_modules (run npm ci first)`);
    }
    found[name] = fs.realpathSync(hit);
  }
  return found;
}

function isElf(file) {
  try {
    const fd = fs.openSync(fs.realpathSync(file), "r");
    const head = Buffer.alloc(4);
    fs.readSync(fd, head, 0, 4, 0);
    fs.closeSync(fd);
    return head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } catch {
    return false;
  }
}

/**
 * Builds (or reuses) base.cpio. `prov` is the provision record; `binaries` are host ELF files
 * whose shared libraries dom0 needs. Returns the archive path.
 */
export async function buildBase(prov, binaries) {
  const entries = [
    { dest: "/init", text: initScript(), mode: 0o755 },
    { dest: "/etc/passwd", text: "root:x:0:0:root:/tmp:/bin/sh\n" },
    { dest: "/etc/group", text: "root:x:0:\n" },
    ...["/proc", "/sys", "/dev", "/tmp", "/out", "/run", "/root", "/var/tmp", "/usr/local/bin"]
      .map((dest) => ({ dest, dir: true })),
    ...(await busyboxEntries()),
    ...XEN_MODULES.map((m) => ({ dest: `/lib/xenchan/${m}.ko`, src: prov.modules[m] })),
    ...(await libraryEntries(binaries)),
  ];
  return await writeArchive("base", entries);
}

/** Builds (or reuses) runtimes.cpio from resolveRuntimes(); returns the archive path. */
export async function buildRuntimes(runtimes) {
  const entries = Object.entries(runtimes).map(([name, src]) => ({
    dest: `/usr/local/bin/${name}`,
    src,
    mode: 0o755,
  }));
  return await writeArchive("runtimes", entries);
}

/**
 * Builds run.cpio for one run. `script`: sh text run as /xenchan-run.sh (cwd /xenchan).
 * `env`: extra variables exported to it. `project`: copy PROJECT_PATHS under /xenchan.
 * `binaries`: host files put at /usr/local/bin/<basename>. Returns the archive path.
 */
export async function buildRun(
  { nonce, script, timeoutS, env = {}, project = true, binaries = [] },
) {
  const vars = { XENCHAN_NONCE: nonce, XENCHAN_TIMEOUT_S: String(timeoutS), ...env };
  const envText = Object.entries(vars).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join("");
  const entries = [
    { dest: "/xenchan-run.sh", text: script, mode: 0o755 },
    { dest: "/xenchan-run.env", text: envText },
    { dest: "/xenchan", dir: true },
    ...binaries.map((src) => ({ dest: `/usr/local/bin/${path.basename(src)}`, src, mode: 0o755 })),
    ...(project ? projectEntries() : []),
  ];
  return await writeArchive("run", entries, { cache: false });
}

/** Concatenates files into `out` (the multi-archive initrd); returns `out`. */
export function concatFiles(parts, out) {
  const fd = fs.openSync(out, "w");
  const buf = Buffer.alloc(8 << 20);
  try {
    for (const part of parts) {
      const src = fs.openSync(part, "r");
      try {
        let n;
        while ((n = fs.readSync(src, buf, 0, buf.length, null)) > 0) fs.writeSync(fd, buf, 0, n);
      } finally {
        fs.closeSync(src);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/** Quotes a string for sh (single quotes). */
export function shellQuote(s) {
  return `'${String(s).replaceAll("'", `'\\''`)}'`;
}

function initScript() {
  const m = markerShell();
  return `#!/bin/sh
# /init of the xenchan dom0 initrd. Generated by scripts/xen/initrd.mjs: edit it there.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
export HOME=/tmp TMPDIR=/tmp DENO_DIR=/tmp/deno NO_COLOR=1 XENCHAN_DOM0=1 XENCHAN_OUT=/out
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
for m in ${XEN_MODULES.join(" ")}; do
  insmod /lib/xenchan/$m.ko || echo "xenchan-init: insmod $m failed"
done
. /xenchan-run.env
${m.start}
cd /xenchan
( timeout -s KILL "$XENCHAN_TIMEOUT_S" sh /xenchan-run.sh; echo $? >/tmp/.xenchan-status ) \\
  </dev/null 2>&1 | tee /out/run.log
status=$(cat /tmp/.xenchan-status 2>/dev/null || echo 255)
cd /out
${dumpShell()}
poweroff -f
`;
}

/**
 * Returns the sh text that prints every file under the current directory between FILE/B64/END
 * markers, then the EXIT marker with $status (needs $XENCHAN_NONCE; busybox or coreutils).
 */
export function dumpShell() {
  const m = markerShell();
  return `find . -type f | sort | while IFS= read -r f; do
  name=\${f#./}
  size=$(wc -c <"$f")
  sum=$(md5sum "$f" | cut -d' ' -f1)
  ${m.file}
  ${m.b64}
  ${m.end}
done
${m.exit}`;
}

async function busyboxEntries() {
  const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((p) => fs.existsSync(p));
  if (!busybox) throw new HarnessError("busybox not found (apt-get install busybox-static)");
  const ldd = await $({ nothrow: true, quiet: true })`ldd ${busybox}`;
  if (!/not a dynamic executable|statically linked/.test(ldd.stdout + ldd.stderr)) {
    throw new HarnessError(`${busybox} is not static (apt-get install busybox-static)`);
  }
  const list = await $({ quiet: true })`${busybox} --list-full`;
  const links = list.stdout.split("\n").map((l) => l.trim()).filter((l) => l && l !== "linuxrc")
    .map((l) => ({ dest: `/${l}`, symlink: "/bin/busybox" }))
    .filter((e) => e.dest !== "/bin/busybox");
  return [{ dest: "/bin/busybox", src: busybox, mode: 0o755 }, ...links];
}

/** ldd closure of the binaries and XEN_SONAMES; each library at the path ldd reports. */
async function libraryEntries(binaries) {
  const sonames = await resolveSonames(XEN_SONAMES);
  const libs = new Set(sonames);
  for (const file of [...binaries, ...sonames]) {
    const r = await $({ nothrow: true, quiet: true })`ldd ${file}`;
    if (r.exitCode !== 0) throw new HarnessError(`ldd ${file} failed`, r.stderr);
    for (const m of r.stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) libs.add(m[1]);
  }
  return [...libs].sort().map((dest) => ({ dest, src: fs.realpathSync(dest) }));
}

async function resolveSonames(sonames) {
  const ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"].find((p) => fs.existsSync(p));
  const cache = ldconfig ? (await $({ quiet: true })`${ldconfig} -p`).stdout : "";
  return sonames.map((so) => {
    const m = cache.match(
      new RegExp(`^\\s*${so.replaceAll(".", "\\.")} \\(libc6,x86-64\\) => (\\S+)`, "m"),
    );
    const direct = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"].map((d) =>
      path.join(d, so)
    )
      .find((p) => fs.existsSync(p));
    const hit = m?.[1] ?? direct;
    if (!hit) throw new HarnessError(`${so} not found on the host (apt-get install libxen-dev)`);
    return hit;
  });
}

function projectEntries() {
  const entries = [];
  for (const rel of PROJECT_PATHS) {
    const src = path.join(REPO, rel);
    if (!fs.existsSync(src)) continue;
    for (const file of walkFiles(src)) {
      entries.push({ dest: `/xenchan/${path.relative(REPO, file)}`, src: file });
    }
  }
  return entries;
}

function* walkFiles(p) {
  const st = fs.statSync(p);
  if (st.isFile()) {
    yield p;
    return;
  }
  if (!st.isDirectory()) return;
  for (const e of fs.readdirSync(p, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name === ".xen" || e.name === "out") continue;
    yield* walkFiles(path.join(p, e.name));
  }
}

/**
 * Materializes entries in a staging directory and writes <cache>/initrd/<name>.cpio with GNU cpio
 * (newc, owner root). With cache: true, reuses the archive when the inputs' key is unchanged.
 */
async function writeArchive(name, entries, { cache = true } = {}) {
  fs.mkdirSync(DIR, { recursive: true });
  const out = path.join(DIR, `${name}.cpio`);
  const keyFile = path.join(DIR, `${name}.key`);
  const key = archiveKey(entries);
  if (cache && fs.existsSync(out) && readText(keyFile) === key) return out;
  const stage = path.join(DIR, `${name}.stage`);
  fs.rmSync(stage, { recursive: true, force: true });
  for (const e of entries) materialize(stage, e);
  const r = await $({ nothrow: true, quiet: true, cwd: stage })`
    find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > ${out}`;
  if (r.exitCode !== 0) throw new HarnessError(`cpio for ${name}.cpio failed`, r.stderr);
  fs.rmSync(stage, { recursive: true, force: true });
  fs.writeFileSync(keyFile, key);
  return out;
}

function materialize(stage, e) {
  const target = path.join(stage, e.dest);
  if (e.dir) {
    fs.mkdirSync(target, { recursive: true });
    return;
  }
  fs.mkdirSync(path.dirname(target), { recursive: true });
  if (e.symlink) {
    if (!fs.existsSync(target)) fs.symlinkSync(e.symlink, target);
    return;
  }
  if (e.text !== undefined) fs.writeFileSync(target, e.text);
  else fs.copyFileSync(e.src, target);
  fs.chmodSync(target, e.mode ?? (fs.statSync(target).mode & 0o777));
}

function archiveKey(entries) {
  const h = crypto.createHash("sha256");
  for (const e of entries) {
    const st = e.src ? fs.statSync(e.src) : null;
    h.update(
      JSON.stringify([e.dest, e.src, e.text, e.mode, e.symlink, e.dir, st?.size, st?.mtimeMs]),
    );
  }
  return h.digest("hex");
}

function readText(file) {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return null;
  }
}
