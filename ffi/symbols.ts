/**
 * THE symbol table: every C function xenchan calls, with its real name and
 * prototype. Both runtime adapters bind exactly these tables.
 *
 * @module
 */
import type { SymbolTable } from "./types.ts";

/** libxenevtchn.so.1 (tools/include/xenevtchn.h). */
export const EVTCHN = {
  // xenevtchn_handle *xenevtchn_open(xentoollog_logger *logger, unsigned open_flags)
  xenevtchn_open: { args: ["pointer", "u32"], returns: "pointer" },
  // xenevtchn_handle *xenevtchn_fdopen(xentoollog_logger *logger, int fd, unsigned open_flags) VERS_1.2
  xenevtchn_fdopen: { args: ["pointer", "i32", "u32"], returns: "pointer", optional: true },
  // int xenevtchn_close(xenevtchn_handle *xce)
  xenevtchn_close: { args: ["pointer"], returns: "i32" },
  // int xenevtchn_fd(xenevtchn_handle *xce)
  xenevtchn_fd: { args: ["pointer"], returns: "i32" },
  // int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
  xenevtchn_notify: { args: ["pointer", "u32"], returns: "i32" },
  // xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid)
  xenevtchn_bind_unbound_port: { args: ["pointer", "u32"], returns: "i32" },
  // xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xce, uint32_t domid, evtchn_port_t remote_port)
  xenevtchn_bind_interdomain: { args: ["pointer", "u32", "u32"], returns: "i32" },
  // xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
  xenevtchn_bind_virq: { args: ["pointer", "u32"], returns: "i32" },
  // int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
  xenevtchn_unbind: { args: ["pointer", "u32"], returns: "i32" },
  // xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
  xenevtchn_pending: { args: ["pointer"], returns: "i32" },
  // int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
  xenevtchn_unmask: { args: ["pointer", "u32"], returns: "i32" },
  // int xenevtchn_restrict(xenevtchn_handle *xce, domid_t domid) VERS_1.1
  xenevtchn_restrict: { args: ["pointer", "u16"], returns: "i32", optional: true },
} as const satisfies SymbolTable;

/** libxengnttab.so.1 (tools/include/xengnttab.h): gnttab and gntshr. */
export const GNTTAB = {
  // xengnttab_handle *xengnttab_open(xentoollog_logger *logger, unsigned open_flags)
  xengnttab_open: { args: ["pointer", "u32"], returns: "pointer" },
  // int xengnttab_close(xengnttab_handle *xgt)
  xengnttab_close: { args: ["pointer"], returns: "i32" },
  // int xengnttab_fd(xengnttab_handle *xgt)
  xengnttab_fd: { args: ["pointer"], returns: "i32" },
  // void *xengnttab_map_grant_ref(xgt, uint32_t domid, uint32_t ref, int prot)
  xengnttab_map_grant_ref: { args: ["pointer", "u32", "u32", "i32"], returns: "pointer" },
  // void *xengnttab_map_grant_refs(xgt, uint32_t count, uint32_t *domids, uint32_t *refs, int prot)
  xengnttab_map_grant_refs: {
    args: ["pointer", "u32", "buffer", "buffer", "i32"],
    returns: "pointer",
  },
  // void *xengnttab_map_domain_grant_refs(xgt, uint32_t count, uint32_t domid, uint32_t *refs, int prot)
  xengnttab_map_domain_grant_refs: {
    args: ["pointer", "u32", "u32", "buffer", "i32"],
    returns: "pointer",
  },
  // void *xengnttab_map_grant_ref_notify(xgt, uint32_t domid, uint32_t ref, int prot,
  //                                      uint32_t notify_offset, evtchn_port_t notify_port)
  xengnttab_map_grant_ref_notify: {
    args: ["pointer", "u32", "u32", "i32", "u32", "u32"],
    returns: "pointer",
  },
  // int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
  xengnttab_unmap: { args: ["pointer", "pointer", "u32"], returns: "i32" },
  // int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
  xengnttab_set_max_grants: { args: ["pointer", "u32"], returns: "i32" },
  // int xengnttab_grant_copy(xgt, uint32_t count, xengnttab_grant_copy_segment_t *segs) VERS_1.1
  xengnttab_grant_copy: { args: ["pointer", "u32", "buffer"], returns: "i32", optional: true },
  // xengntshr_handle *xengntshr_open(xentoollog_logger *logger, unsigned open_flags)
  xengntshr_open: { args: ["pointer", "u32"], returns: "pointer" },
  // int xengntshr_close(xengntshr_handle *xgs)
  xengntshr_close: { args: ["pointer"], returns: "i32" },
  // int xengntshr_fd(xengntshr_handle *xgs)
  xengntshr_fd: { args: ["pointer"], returns: "i32" },
  // void *xengntshr_share_pages(xgs, uint32_t domid, int count, uint32_t *refs, int writable)
  xengntshr_share_pages: { args: ["pointer", "u32", "i32", "buffer", "i32"], returns: "pointer" },
  // void *xengntshr_share_page_notify(xgs, uint32_t domid, uint32_t *ref, int writable,
  //                                   uint32_t notify_offset, evtchn_port_t notify_port)
  xengntshr_share_page_notify: {
    args: ["pointer", "u32", "buffer", "i32", "u32", "u32"],
    returns: "pointer",
  },
  // int xengntshr_unshare(xengntshr_handle *xgs, void *start_address, uint32_t count)
  xengntshr_unshare: { args: ["pointer", "pointer", "u32"], returns: "i32" },
} as const satisfies SymbolTable;

/** libxentoollog.so.1 (tools/include/xentoollog.h): a quiet logger. */
export const TOOLLOG = {
  // xentoollog_logger_stdiostream *xtl_createlogger_stdiostream(FILE *f, xentoollog_level min_level, unsigned flags)
  xtl_createlogger_stdiostream: { args: ["pointer", "i32", "u32"], returns: "pointer" },
  // void xtl_logger_destroy(struct xentoollog_logger *logger)
  xtl_logger_destroy: { args: ["pointer"], returns: "void" },
} as const satisfies SymbolTable;

/**
 * libxenctrl.so.4.NN (tools/include/xenctrl.h): domain information only.
 * Its soname changes with every Xen release (LIBRARIES.xenctrl lists the
 * versions tried); these three prototypes are the same from 4.16 to 4.21.
 */
export const XENCTRL = {
  // xc_interface *xc_interface_open(xentoollog_logger *logger,
  //                                 xentoollog_logger *dombuild_logger, unsigned open_flags)
  xc_interface_open: { args: ["pointer", "pointer", "u32"], returns: "pointer" },
  // int xc_interface_close(xc_interface *xch)
  xc_interface_close: { args: ["pointer"], returns: "i32" },
  // int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
  //                           xc_domaininfo_t *info)
  xc_domain_getinfolist: { args: ["pointer", "u32", "u32", "buffer"], returns: "i32" },
} as const satisfies SymbolTable;

/** libc.so.6: the few calls xenchan needs itself. */
export const LIBC = {
  // int *__errno_location(void)
  __errno_location: { args: [], returns: "pointer" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout)
  poll: { args: ["buffer", "u64", "i32"], returns: "i32" },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { args: ["u32", "i32"], returns: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { args: ["i32", "buffer", "u64"], returns: "i64" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { args: ["i32", "buffer", "u64"], returns: "i64" },
  // int close(int fd)
  close: { args: ["i32"], returns: "i32" },
  // int open(const char *pathname, int flags, ...): the variadic mode_t is read only with
  // O_CREAT or O_TMPFILE, which xenchan never passes, so it is not declared.
  open: { args: ["buffer", "i32"], returns: "i32" },
  // FILE *fopen(const char *pathname, const char *mode)
  fopen: { args: ["buffer", "buffer"], returns: "pointer" },
} as const satisfies SymbolTable;

/**
 * libc.so.6, the waiting call: the same poll(2) as a blocking symbol. Deno
 * runs it on a helper thread; Bun calls it only inside ffi/poll_worker.ts.
 */
export const LIBC_WAIT = {
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout)
  poll: { args: ["buffer", "u64", "i32"], returns: "i32", blocking: true },
} as const satisfies SymbolTable;

/** Sonames and install hints for each library, in load order. */
export const LIBRARIES = {
  evtchn: {
    sonames: ["libxenevtchn.so.1", "libxenevtchn.so"],
    envVar: "XENCHAN_LIBXENEVTCHN",
    install: "libxenevtchn1",
  },
  gnttab: {
    sonames: ["libxengnttab.so.1", "libxengnttab.so"],
    envVar: "XENCHAN_LIBXENGNTTAB",
    install: "libxengnttab1",
  },
  toollog: {
    sonames: ["libxentoollog.so.1", "libxentoollog.so"],
    envVar: "XENCHAN_LIBXENTOOLLOG",
    install: "libxentoollog1",
  },
  xenctrl: {
    // Debian 12 and Ubuntu 24.04 ship 4.17 (package libxenmisc4.17); Debian 13 ships 4.20
    // (libxenmisc4.20). The unversioned name is the libxen-dev symlink.
    sonames: [
      "libxenctrl.so.4.17",
      "libxenctrl.so.4.18",
      "libxenctrl.so.4.19",
      "libxenctrl.so.4.20",
      "libxenctrl.so.4.21",
      "libxenctrl.so.4.16",
      "libxenctrl.so",
    ],
    envVar: "XENCHAN_LIBXENCTRL",
    install: "libxenmisc4.17",
  },
  libc: { sonames: ["libc.so.6"], envVar: "XENCHAN_LIBC", install: "libc6" },
} as const;
