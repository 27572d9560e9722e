/**
 * THE symbol table: every C function xenchan calls, with its real name and
 * prototype. Both runtime adapters bind exactly these tables.
 *
 * @module
 */
import type { CallbackDef, SymbolTable } from "./types.ts";

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

/**
 * libxenlight.so.4.NN (tools/include/libxl.h, libxl_event.h): a libxl_ctx
 * driven through the osevent hooks, domain death events, and a few
 * asynchronous domain operations. Every operation that takes a
 * `const libxl_asyncop_how *` is always given one with a callback (never
 * NULL: NULL makes libxl run its own poll loop and block the caller).
 * The prototypes are the same from 4.13 to 4.21 (LIBXL_API_VERSION 0x041300
 * made pause/unpause/shutdown/reboot asynchronous).
 */
export const LIBXL = {
  // int libxl_ctx_alloc(libxl_ctx **pctx, int version, unsigned flags, xentoollog_logger *lg)
  libxl_ctx_alloc: { args: ["buffer", "i32", "u32", "pointer"], returns: "i32" },
  // int libxl_ctx_free(libxl_ctx *ctx /* 0 is OK */)
  libxl_ctx_free: { args: ["pointer"], returns: "i32" },
  // void libxl_osevent_register_hooks(libxl_ctx *ctx, const libxl_osevent_hooks *hooks, void *user)
  libxl_osevent_register_hooks: { args: ["pointer", "pointer", "pointer"], returns: "void" },
  // void libxl_osevent_occurred_fd(libxl_ctx *ctx, void *for_libxl, int fd, short events, short revents)
  libxl_osevent_occurred_fd: {
    args: ["pointer", "pointer", "i32", "i16", "i16"],
    returns: "void",
  },
  // void libxl_osevent_occurred_timeout(libxl_ctx *ctx, void *for_libxl)
  libxl_osevent_occurred_timeout: { args: ["pointer", "pointer"], returns: "void" },
  // void libxl_event_register_callbacks(libxl_ctx *ctx, const libxl_event_hooks *hooks, void *user)
  libxl_event_register_callbacks: { args: ["pointer", "pointer", "pointer"], returns: "void" },
  // void libxl_event_free(libxl_ctx *ctx, libxl_event *event)
  libxl_event_free: { args: ["pointer", "pointer"], returns: "void" },
  // int libxl_evenable_domain_death(libxl_ctx *ctx, uint32_t domid, libxl_ev_user,
  //                                 libxl_evgen_domain_death **evgen_out)
  libxl_evenable_domain_death: { args: ["pointer", "u32", "u64", "buffer"], returns: "i32" },
  // void libxl_evdisable_domain_death(libxl_ctx *ctx, libxl_evgen_domain_death *evgen)
  libxl_evdisable_domain_death: { args: ["pointer", "pointer"], returns: "void" },
  // void libxl_childproc_setmode(libxl_ctx *ctx, const libxl_childproc_hooks *hooks, void *user)
  libxl_childproc_setmode: { args: ["pointer", "pointer", "pointer"], returns: "void" },
  // void libxl_childproc_sigchld_occurred(libxl_ctx *ctx)
  libxl_childproc_sigchld_occurred: { args: ["pointer"], returns: "void" },
  // int libxl_childproc_reaped(libxl_ctx *ctx, pid_t, int status)
  libxl_childproc_reaped: { args: ["pointer", "i32", "i32"], returns: "i32" },
  // libxl_dominfo * libxl_list_domain(libxl_ctx*, int *nb_domain_out)
  libxl_list_domain: { args: ["pointer", "buffer"], returns: "pointer" },
  // void libxl_dominfo_list_free(libxl_dominfo *list, int nb_domain)
  libxl_dominfo_list_free: { args: ["pointer", "i32"], returns: "void" },
  // void libxl_dominfo_init(libxl_dominfo *p)
  libxl_dominfo_init: { args: ["buffer"], returns: "void" },
  // void libxl_dominfo_dispose(libxl_dominfo *p)
  libxl_dominfo_dispose: { args: ["buffer"], returns: "void" },
  // int libxl_domain_info(libxl_ctx*, libxl_dominfo *info_r, uint32_t domid)
  libxl_domain_info: { args: ["pointer", "buffer", "u32"], returns: "i32" },
  // char *libxl_domid_to_name(libxl_ctx *ctx, uint32_t domid)
  libxl_domid_to_name: { args: ["pointer", "u32"], returns: "pointer" },
  // int libxl_domain_pause(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
  libxl_domain_pause: { args: ["pointer", "u32", "buffer"], returns: "i32" },
  // int libxl_domain_unpause(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
  libxl_domain_unpause: { args: ["pointer", "u32", "buffer"], returns: "i32" },
  // int libxl_domain_shutdown(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
  libxl_domain_shutdown: { args: ["pointer", "u32", "buffer"], returns: "i32" },
  // int libxl_domain_reboot(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
  libxl_domain_reboot: { args: ["pointer", "u32", "buffer"], returns: "i32" },
  // int libxl_domain_destroy(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
  libxl_domain_destroy: { args: ["pointer", "u32", "buffer"], returns: "i32" },
} as const satisfies SymbolTable;

/**
 * The C function pointer types libxl calls back (libxl_event.h
 * libxl_osevent_hooks, libxl_event_hooks; libxl.h libxl_asyncop_how).
 * `struct timeval abs` is passed by value: on x86_64 (SysV) and aarch64
 * (AAPCS64) a 16-byte struct of two 64-bit integers travels in the next two
 * integer registers, exactly like two i64 arguments, which is how both
 * runtimes declare it (Bun has no struct-by-value type).
 */
export const LIBXL_CALLBACKS = {
  // int (*fd_register)(void *user, int fd, void **for_app_registration_out, short events, void *for_libxl)
  fd_register: { args: ["pointer", "i32", "pointer", "i16", "pointer"], returns: "i32" },
  // int (*fd_modify)(void *user, int fd, void **for_app_registration_update, short events)
  fd_modify: { args: ["pointer", "i32", "pointer", "i16"], returns: "i32" },
  // void (*fd_deregister)(void *user, int fd, void *for_app_registration)
  fd_deregister: { args: ["pointer", "i32", "pointer"], returns: "void" },
  // int (*timeout_register)(void *user, void **for_app_registration_out, struct timeval abs, void *for_libxl)
  timeout_register: { args: ["pointer", "pointer", "i64", "i64", "pointer"], returns: "i32" },
  // int (*timeout_modify)(void *user, void **for_app_registration_update, struct timeval abs)
  timeout_modify: { args: ["pointer", "pointer", "i64", "i64"], returns: "i32" },
  // void (*timeout_deregister)(void *user, void *for_app_registration_io)
  timeout_deregister: { args: ["pointer", "pointer"], returns: "void" },
  // void (*event_occurs)(void *user, libxl_event *event)
  event_occurs: { args: ["pointer", "pointer"], returns: "void" },
  // void (*disaster)(void *user, libxl_event_type type, const char *msg, int errnoval)
  disaster: { args: ["pointer", "i32", "pointer", "i32"], returns: "void" },
  // void (*callback)(libxl_ctx *ctx, int rc, void *for_callback)   (libxl_asyncop_how)
  ao_complete: { args: ["pointer", "i32", "pointer"], returns: "void" },
} as const satisfies Readonly<Record<string, CallbackDef>>;

/** libc.so.6: the few calls xenchan needs itself. */
export const LIBC = {
  // int *__errno_location(void)
  __errno_location: { args: [], returns: "pointer" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout)
  poll: { args: ["buffer", "u64", "i32"], returns: "i32" },
  // int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo_p,
  //           const sigset_t *sigmask): the bounded inline wait of ffi/poller.ts
  ppoll: { args: ["buffer", "u64", "buffer", "pointer"], returns: "i32" },
  // int sched_yield(void): lets a peer that was just woken on this CPU answer first
  sched_yield: { args: [], returns: "i32" },
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
  // FILE *fdopen(int fd, const char *mode)
  fdopen: { args: ["i32", "buffer"], returns: "pointer" },
  // int fclose(FILE *stream)
  fclose: { args: ["pointer"], returns: "i32" },
  // int setvbuf(FILE *stream, char *buf, int mode, size_t size)
  setvbuf: { args: ["pointer", "pointer", "i32", "u64"], returns: "i32" },
  // int dup(int oldfd)
  dup: { args: ["i32"], returns: "i32" },
  // void *calloc(size_t nmemb, size_t size)
  calloc: { args: ["u64", "u64"], returns: "pointer" },
  // void free(void *ptr)
  free: { args: ["pointer"], returns: "void" },
  // size_t strlen(const char *s)
  strlen: { args: ["pointer"], returns: "u64" },
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
  xenlight: {
    // Same releases as libxenctrl (and the same Debian package).
    sonames: [
      "libxenlight.so.4.17",
      "libxenlight.so.4.18",
      "libxenlight.so.4.19",
      "libxenlight.so.4.20",
      "libxenlight.so.4.21",
      "libxenlight.so.4.16",
      "libxenlight.so",
    ],
    envVar: "XENCHAN_LIBXENLIGHT",
    install: "libxenmisc4.17",
  },
  libc: { sonames: ["libc.so.6"], envVar: "XENCHAN_LIBC", install: "libc6" },
} as const;
