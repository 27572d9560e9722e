// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/initrd.mjs - builds the dom0 initrd as concatenated newc cpio archives.
//
// What it does: Linux unpacks concatenated cpio archives in order, so the initrd is
//   base.cpio      busybox + applet links, /init, the Xen kernel modules, and the glibc and
//                  libxen* libraries that ldd finds for deno, bun and the C bench binaries
//                  (cached in <cache>/initrd/, rebuilt only when an input changes)
//   runtimes.cpio  the real deno and bun ELF binaries at /usr/local/bin (cached likewise)
//   tools.cpio     optional (boots with guests): the Xen toolstack (TOOL_FILES from the unpacked
//                  packages, their ldd closure), /xenchan-xen/bin/{xenchan-xenstored,
//                  xenchan-guest} (scripts/xen/sh/) and /xenchan-xen/profile (cached)
//   guests.cpio    optional: /xenchan-xen/guest/vmlinux (the uncompressed guest kernel) and the
//                  guest images /xenchan-xen/guest/{none,deno,bun}.img (cached)
//   run.cpio       per run: the project source under /xenchan, the C binaries at
//                  /usr/local/bin, /xenchan-run.sh and /xenchan-run.env (small)
// A guest image is itself concatenated cpio: guest-base.cpio (busybox, scripts/xen/sh/guest-init
// as /init, XEN_MODULES, the xenstore client, glibc and libxen* incl. GUEST_SONAMES, the libraries
// deno and bun need), then guest-rt-<runtime>.cpio (that runtime at /usr/local/bin; none for
// none.img), then guest-cbin.cpio (the C binaries of bench/c at /usr/local/bin, the same files
// dom0 gets: the C libxenvchan peer runs in guests too; their libraries are all in guest-base),
// then guest-project.cpio (PROJECT_PATHS under /xenchan).
// /init (dom0): mounts proc, sys, devtmpfs, devpts, tmpfs; insmods the modules (ALL_MODULES;
// xenfs is mounted on /proc/xen); sources /xenchan-xen/profile when present; prints the START
// marker; runs /xenchan-run.sh in /xenchan under `timeout`, its output teed to /out/run.log; prints
// every file under /out base64-encoded between markers, then the EXIT marker; `poweroff -f`.
// Environment in dom0: PATH, LD_LIBRARY_PATH, HOME=/tmp, DENO_DIR=/tmp/deno, NO_COLOR=1,
// XENCHAN_DOM0=1, XENCHAN_OUT=/out (the run script writes its result files there).
//
// Exports: resolveRuntimes(), buildBase(), buildRuntimes(), buildTools(), buildGuests(),
// buildRun(), concatFiles().
// Errors: HarnessError naming the missing input or the failed command.

import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { $ } from "zx";
import {
  ALL_MODULES,
  CACHE,
  GUEST_SONAMES,
  HarnessError,
  PROJECT_PATHS,
  REPO,
  TOOL_FILES,
  XEN_MODULES,
  XEN_SONAMES,
  XEN_TOOL_BIN,
  XENSTORE_LINKS,
} from "./config.mjs";
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
    ...ALL_MODULES.map((m) => ({ dest: `/lib/xenchan/${m}.ko`, src: prov.modules[m] })),
    ...(await libraryEntries(binaries)),
  ];
  return await writeArchive("base", entries);
}

const SH_DIR = path.join(REPO, "scripts", "xen", "sh");

/**
 * Builds (or reuses) tools.cpio: the toolstack from the unpacked packages in prov.tools at
 * their Debian paths, the xenstore-* links, the libraries they need, the dom0 helpers and
 * /xenchan-xen/profile (sourced by /init: PATH, XENCHAN_GUESTS=1, XENCHAN_GUEST_HELPER,
 * XENCHAN_XENSTORED_HELPER). Returns the archive path.
 */
export async function buildTools(prov) {
  const files = TOOL_FILES.map((dest) => ({ dest, src: path.join(prov.tools, dest) }));
  for (const f of files) {
    if (!fs.existsSync(f.src)) throw new HarnessError(`toolstack file ${f.dest} not unpacked`);
  }
  const elves = files.map((f) => f.src).filter(isElf);
  const profile =
    `# /xenchan-xen/profile: sourced by dom0's /init (generated by scripts/xen/initrd.mjs)
export PATH=/xenchan-xen/bin:${XEN_TOOL_BIN}:$PATH
export XENCHAN_GUESTS=1
export XENCHAN_GUEST_HELPER=/xenchan-xen/bin/xenchan-guest
export XENCHAN_XENSTORED_HELPER=/xenchan-xen/bin/xenchan-xenstored
`;
  const entries = [
    ...files.map((f) => ({ ...f, mode: isElf(f.src) ? 0o755 : 0o644 })),
    ...XENSTORE_LINKS.map((dest) => ({ dest, symlink: "/usr/bin/xenstore" })),
    ...["xenchan-xenstored", "xenchan-guest"].map((name) => ({
      dest: `/xenchan-xen/bin/${name}`,
      src: path.join(SH_DIR, name),
      mode: 0o755,
    })),
    { dest: "/xenchan-xen/profile", text: profile },
    ...["/var/run/xen", "/var/lib/xen", "/var/lib/xenstored", "/var/log/xen/console", "/var/lock"]
      .map((dest) => ({ dest, dir: true })),
    ...(await libraryEntries(elves, { root: prov.tools })),
  ];
  return await writeArchive("tools", entries);
}

/**
 * Builds (or reuses) the guest images and guests.cpio that carries them into dom0 (see the file
 * comment). `runtimes` is resolveRuntimes(); `cBins` the built C binaries (buildCBenches()),
 * put at /usr/local/bin in every image. Returns the guests.cpio path.
 */
export async function buildGuests(prov, runtimes, cBins = []) {
  const xenstore = path.join(prov.tools, "usr/bin/xenstore");
  const base = await writeArchive("guest-base", [
    { dest: "/init", src: path.join(SH_DIR, "guest-init"), mode: 0o755 },
    { dest: "/etc/passwd", text: "root:x:0:0:root:/tmp:/bin/sh\n" },
    { dest: "/etc/group", text: "root:x:0:\n" },
    ...["/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/var/tmp", "/usr/local/bin"]
      .map((dest) => ({ dest, dir: true })),
    ...(await busyboxEntries()),
    ...XEN_MODULES.map((m) => ({ dest: `/lib/xenchan/${m}.ko`, src: prov.modules[m] })),
    { dest: "/usr/bin/xenstore", src: xenstore, mode: 0o755 },
    ...XENSTORE_LINKS.map((dest) => ({ dest, symlink: "/usr/bin/xenstore" })),
    ...(await libraryEntries([...Object.values(runtimes), xenstore], {
      root: prov.tools,
      sonames: [...XEN_SONAMES, ...GUEST_SONAMES],
    })),
  ]);
  const project = await writeArchive("guest-project", projectEntries());
  const cbin = cBins.length === 0 ? [] : [
    await writeArchive(
      "guest-cbin",
      cBins.map((src) => ({ dest: `/usr/local/bin/${path.basename(src)}`, src, mode: 0o755 })),
    ),
  ];
  const images = [];
  for (const name of ["none", ...Object.keys(runtimes)]) {
    const parts = [base];
    if (name !== "none") {
      parts.push(
        await writeArchive(`guest-rt-${name}`, [
          { dest: `/usr/local/bin/${name}`, src: runtimes[name], mode: 0o755 },
        ]),
      );
    }
    parts.push(...cbin, project);
    const img = concatCached(parts, path.join(DIR, `guest-${name}.img`));
    images.push({ dest: `/xenchan-xen/guest/${name}.img`, src: img });
  }
  return await writeArchive("guests", [
    { dest: "/xenchan-xen/guest/vmlinux", src: prov.vmlinux },
    ...images,
  ]);
}

/** concatFiles() unless `out` already holds these parts (same paths, sizes and mtimes). */
function concatCached(parts, out) {
  const key = archiveKey(parts.map((src) => ({ src })));
  if (fs.existsSync(out) && readText(`${out}.key`) === key) return out;
  concatFiles(parts, out);
  fs.writeFileSync(`${out}.key`, key);
  return out;
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
for m in ${ALL_MODULES.join(" ")}; do
  insmod /lib/xenchan/$m.ko || echo "xenchan-init: insmod $m failed"
done
mkdir -p /proc/xen
grep -q xenfs /proc/filesystems && mount -t xenfs xenfs /proc/xen
[ -f /xenchan-xen/profile ] && . /xenchan-xen/profile
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

/**
 * ldd closure of the binaries and `sonames`; each library at the path ldd reports. With `root`
 * (an unpacked package tree) ldd also searches root's library directories first, and a library
 * found there goes to its path below root (e.g. <root>/usr/lib/x.so -> /usr/lib/x.so).
 * A library ldd cannot find is a HarnessError.
 */
async function libraryEntries(binaries, { root = null, sonames = XEN_SONAMES } = {}) {
  const libDirs = root
    ? ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib/xen-4.17/lib/x86_64-linux-gnu"]
      .map((d) => path.join(root, d)).filter((d) => fs.existsSync(d))
    : [];
  const env = { ...process.env, LD_LIBRARY_PATH: libDirs.join(":") };
  const resolved = await resolveSonames(sonames, libDirs);
  const libs = new Set(resolved);
  for (const file of [...binaries, ...resolved]) {
    const r = await $({ nothrow: true, quiet: true, env })`ldd ${file}`;
    if (r.exitCode !== 0) throw new HarnessError(`ldd ${file} failed`, r.stderr);
    const missing = r.stdout.match(/^\s*(\S+) => not found/m);
    if (missing) throw new HarnessError(`${file} needs ${missing[1]}, found nowhere`);
    for (const m of r.stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) libs.add(m[1]);
  }
  const inRoot = (p) => root && p.startsWith(root + path.sep);
  return [...libs].sort().map((p) => ({
    dest: inRoot(p) ? p.slice(root.length) : p,
    src: fs.realpathSync(p),
  }));
}

async function resolveSonames(sonames, firstDirs = []) {
  const ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"].find((p) => fs.existsSync(p));
  const cache = ldconfig ? (await $({ quiet: true })`${ldconfig} -p`).stdout : "";
  return sonames.map((so) => {
    const m = cache.match(
      new RegExp(`^\\s*${so.replaceAll(".", "\\.")} \\(libc6,x86-64\\) => (\\S+)`, "m"),
    );
    const find = (dirs) => dirs.map((d) => path.join(d, so)).find((p) => fs.existsSync(p));
    const direct = find(["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]);
    const hit = find(firstDirs) ?? m?.[1] ?? direct;
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
