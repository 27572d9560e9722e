// deno-lint-ignore-file explicit-module-boundary-types -- plain JS run by node: no type syntax
// scripts/xen/provision.mjs - get everything a real Xen dom0 boot needs onto the host.
//
// What it does (idempotent, cached in <cache>/provision.json):
//   1. Installs the missing HOST_PACKAGES with apt-get (apt-get update at most once).
//   2. apt-get downloads the Xen hypervisor package and the real kernel image package
//      behind linux-image-amd64, unpacks them with dpkg-deb -x under <cache>/pkg/.
//   3. Writes <cache>/xen.elf (gunzipped, QEMU -kernel loads it as multiboot),
//      <cache>/vmlinuz and <cache>/modules/<name>.ko (uncompressed) for ALL_MODULES,
//      then deletes the unpacked trees (the .debs stay in <cache>/debs).
//   4. Downloads the TOOL_PACKAGES (the Xen toolstack) and unpacks them together into
//      <cache>/tools (kept: about 40 MB; dom0's initrd takes TOOL_FILES from there).
//   5. Writes <cache>/vmlinux, the guest kernel: the same kernel uncompressed (the bzImage
//      carries it as one xz stream; xl boots the ELF in about 1 s instead of 6-9 s).
// A second run with the cache in place makes no apt call and takes well under a second.
//
// CLI:    node scripts/xen/provision.mjs      prints the provision record as JSON
// Output: provision() resolves to { xen, vmlinuz, vmlinux, tools, modules: {name: path},
//         kernelPackage, kernelRelease }
// Errors: throws HarnessError naming the failed step (apt, download, unpack, missing file).
// Exit:   0 when provisioned, 1 otherwise.

import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { $ } from "zx";
import {
  ALL_MODULES,
  CACHE,
  HarnessError,
  HOST_PACKAGES,
  KERNEL_META_PACKAGE,
  note,
  TOOL_PACKAGES,
  XEN_PACKAGE,
} from "./config.mjs";

const STAMP = path.join(CACHE, "provision.json");
const STAMP_VERSION = 3;
/** The xz magic: the start of the compressed kernel inside Debian's bzImage. */
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

let aptUpdated = false;

/** Provisions the host (see the file comment); returns the provision record. */
export async function provision() {
  await installHostPackages();
  const cached = readStamp();
  if (cached) return cached;
  fs.mkdirSync(CACHE, { recursive: true });
  const kernelPackage = await resolveKernelPackage();
  const debs = await download([XEN_PACKAGE, kernelPackage, ...TOOL_PACKAGES]);
  const xenRoot = await unpack(debs[XEN_PACKAGE], XEN_PACKAGE);
  const kernelRoot = await unpack(debs[kernelPackage], kernelPackage);
  const kernel = findKernel(kernelRoot);
  const record = {
    version: STAMP_VERSION,
    xen: writeXenElf(xenRoot),
    vmlinuz: path.join(CACHE, "vmlinuz"),
    kernelRelease: kernel.release,
    kernelPackage,
    modules: extractModules(kernelRoot, kernel.release),
    tools: await unpackTools(debs),
    vmlinux: path.join(CACHE, "vmlinux"),
  };
  fs.copyFileSync(kernel.image, record.vmlinuz);
  await writeVmlinux(record.vmlinuz, record.vmlinux);
  fs.rmSync(path.join(CACHE, "pkg"), { recursive: true, force: true }); // ~450 MB, not needed now
  fs.writeFileSync(STAMP, JSON.stringify(record, null, 2) + "\n");
  return record;
}

/** Returns the cached record when every file it names still exists, else null. */
function readStamp() {
  let record;
  try {
    record = JSON.parse(fs.readFileSync(STAMP, "utf8"));
  } catch {
    return null;
  }
  if (record.version !== STAMP_VERSION) return null;
  const files = [
    record.xen,
    record.vmlinuz,
    record.vmlinux,
    record.tools,
    ...Object.values(record.modules ?? {}),
  ];
  return files.every((f) => typeof f === "string" && fs.existsSync(f)) ? record : null;
}

async function aptUpdateOnce() {
  if (aptUpdated) return;
  note("apt-get update");
  await run("apt-get update", sudo(["apt-get", "-q", "update"]));
  aptUpdated = true;
}

/**
 * Installs the HOST_PACKAGES that are missing (apt-get, once): the host test suites need
 * libxen-dev (the real libraries and headers) and gcc too. Throws HarnessError on failure.
 */
export async function installHostPackages() {
  const missing = [];
  for (const pkg of HOST_PACKAGES) {
    const query = ["dpkg-query", "-W", "-f=${Status}", pkg];
    const r = await $({ nothrow: true, quiet: true })`${query}`;
    if (!r.stdout.includes("install ok installed")) missing.push(pkg);
  }
  if (missing.length === 0) return;
  await aptUpdateOnce();
  note(`apt-get install ${missing.join(" ")}`);
  await run(
    "apt-get install",
    sudo(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...missing]),
    { DEBIAN_FRONTEND: "noninteractive" },
  );
}

async function resolveKernelPackage() {
  await aptUpdateOnce();
  const out = await run("apt-cache depends", ["apt-cache", "depends", KERNEL_META_PACKAGE]);
  const m = out.match(/Depends:\s*(linux-image-[0-9][^\s]*)/);
  if (!m) {
    throw new HarnessError(`cannot find the kernel package behind ${KERNEL_META_PACKAGE}`, out);
  }
  return m[1];
}

/** apt-get downloads the packages into <cache>/debs; returns {package: debPath}. */
async function download(packages) {
  const dir = path.join(CACHE, "debs");
  fs.mkdirSync(dir, { recursive: true });
  const result = {};
  for (const pkg of packages) {
    let deb = findDeb(dir, pkg);
    if (!deb) {
      note(`apt-get download ${pkg}`);
      await run("apt-get download", ["apt-get", "download", "-q", pkg], {}, dir);
      deb = findDeb(dir, pkg);
    }
    if (!deb) throw new HarnessError(`apt-get download ${pkg} left no .deb in ${dir}`);
    result[pkg] = deb;
  }
  return result;
}

function findDeb(dir, pkg) {
  const hit = fs.readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
  return hit ? path.join(dir, hit) : null;
}

async function unpack(deb, pkg) {
  const root = path.join(CACHE, "pkg", pkg);
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  note(`dpkg-deb -x ${path.basename(deb)}`);
  await run("dpkg-deb -x", ["dpkg-deb", "-x", deb, root]);
  return root;
}

/** Unpacks every TOOL_PACKAGES .deb into one fresh <cache>/tools tree; returns its path. */
async function unpackTools(debs) {
  const root = path.join(CACHE, "tools");
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  for (const pkg of TOOL_PACKAGES) {
    note(`dpkg-deb -x ${path.basename(debs[pkg])}`);
    await run("dpkg-deb -x", ["dpkg-deb", "-x", debs[pkg], root]);
  }
  return root;
}

/** Cuts the xz stream out of the bzImage and decompresses it to the ELF guest kernel. */
async function writeVmlinux(bzImage, out) {
  const image = fs.readFileSync(bzImage);
  const at = image.indexOf(XZ_MAGIC);
  if (at < 0) throw new HarnessError(`no xz stream in ${bzImage} (not a Debian bzImage?)`);
  const xzFile = `${out}.xz`;
  fs.writeFileSync(xzFile, image.subarray(at));
  // xz writes the file itself: the bytes never pass through a JS string
  const r = await $({ nothrow: true, quiet: true })`xz -dc --single-stream ${xzFile} > ${out}`;
  fs.rmSync(xzFile, { force: true });
  const head = Buffer.alloc(4);
  const fd = fs.openSync(out, "r");
  fs.readSync(fd, head, 0, 4, 0);
  fs.closeSync(fd);
  if (r.exitCode !== 0 || head.readUInt32BE(0) !== 0x7f454c46) {
    fs.rmSync(out, { force: true });
    throw new HarnessError(`xz -dc of the kernel in ${bzImage} gave no ELF image`, r.stderr);
  }
}

function writeXenElf(xenRoot) {
  const boot = path.join(xenRoot, "boot");
  const gz = fs.existsSync(boot) &&
    fs.readdirSync(boot).find((f) => /^xen-.*\.gz$/.test(f));
  if (!gz) throw new HarnessError(`no boot/xen-*.gz in ${XEN_PACKAGE}`);
  const out = path.join(CACHE, "xen.elf");
  fs.writeFileSync(out, zlib.gunzipSync(fs.readFileSync(path.join(boot, gz))));
  return out;
}

function findKernel(kernelRoot) {
  const boot = path.join(kernelRoot, "boot");
  const img = fs.existsSync(boot) && fs.readdirSync(boot).find((f) => f.startsWith("vmlinuz-"));
  if (!img) throw new HarnessError(`no boot/vmlinuz-* in the kernel package`);
  return { image: path.join(boot, img), release: img.slice("vmlinuz-".length) };
}

/** Copies XEN_MODULES out of the kernel tree (decompressing .ko.xz/.ko.zst); returns paths. */
function extractModules(kernelRoot, release) {
  const tree = [
    path.join(kernelRoot, "lib", "modules", release),
    path.join(kernelRoot, "usr", "lib", "modules", release),
  ].find((d) => fs.existsSync(d));
  if (!tree) throw new HarnessError(`no lib/modules/${release} in the kernel package`);
  const found = {};
  for (const file of walk(tree)) {
    const m = path.basename(file).match(/^(.*)\.ko(\.xz|\.zst|\.gz)?$/);
    if (m && ALL_MODULES.includes(m[1])) found[m[1]] = file;
  }
  const outDir = path.join(CACHE, "modules");
  fs.mkdirSync(outDir, { recursive: true });
  const modules = {};
  for (const name of ALL_MODULES) {
    if (!found[name]) throw new HarnessError(`kernel module ${name}.ko not found under ${tree}`);
    const out = path.join(outDir, `${name}.ko`);
    decompressModule(found[name], out);
    modules[name] = out;
  }
  return modules;
}

function decompressModule(src, out) {
  if (src.endsWith(".ko")) fs.copyFileSync(src, out);
  else if (src.endsWith(".gz")) fs.writeFileSync(out, zlib.gunzipSync(fs.readFileSync(src)));
  else {
    const tool = src.endsWith(".xz") ? "xz" : "zstd";
    // the tool writes the file itself: the bytes never pass through a JS string
    const r = $.sync({ nothrow: true, quiet: true })`${tool} -dc ${src} > ${out}`;
    if (r.exitCode !== 0) throw new HarnessError(`${tool} -dc ${src} failed`, r.stderr);
  }
}

function* walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else yield p;
  }
}

function sudo(argv) {
  if (process.getuid?.() === 0) return argv;
  return ["sudo", "-n", ...argv];
}

/** Runs argv; returns stdout; throws HarnessError with its output on failure. */
async function run(step, argv, env = {}, cwd = undefined) {
  const r = await $({ nothrow: true, quiet: true, cwd, env: { ...process.env, ...env } })`${argv}`;
  if (r.exitCode !== 0) {
    throw new HarnessError(
      `provision: ${step} failed (exit ${r.exitCode}): ${argv.join(" ")}`,
      (r.stdout + r.stderr).split("\n").slice(-30).join("\n"),
    );
  }
  return r.stdout;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const t0 = Date.now();
    const record = await provision();
    console.log(JSON.stringify(record, null, 2));
    note(`provisioned in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    console.error(e instanceof HarnessError ? e.message : e);
    process.exit(1);
  }
}
