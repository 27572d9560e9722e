/*
 * evtchn_pingpong.c - C baseline for the xenchan event channel round trip.
 *
 * What it does: opens two handles on the REAL libxenevtchn in one process,
 * binds them to each other in dom0 (loopback, domid 0):
 *     p1 = xenevtchn_bind_unbound_port(h1, 0)
 *     p2 = xenevtchn_bind_interdomain(h2, 0, p1)
 * and times N round trips of
 *     notify(h1,p1) -> poll(fd2) -> pending(h2) -> unmask(h2,p2)
 *     -> notify(h2,p2) -> poll(fd1) -> pending(h1) -> unmask(h1,p1)
 * then times N bare notifies on p1 while h2 does not read (the event stays
 * pending; those sends only hit the hypervisor), and drains once.
 *
 * Usage:  evtchn_pingpong [N]      (N defaults to 10000, warm-up is N/10)
 * Output: ONE line of JSON on stdout:
 *     {"name":"c","roundtrips":N,"ns_per_roundtrip":F,"notify_ns":F,
 *      "cpu_ns_per_roundtrip":F}   (CPU: getrusage user + system, this process)
 *
 * Cross-process mode, a C peer in each of two processes (or one of them
 * xenchan, bench/evtchn_roundtrip.ts --echo / --client, same protocol):
 *   evtchn_pingpong echo <N>
 *       binds an unbound port for domain 0, prints {"port":P} on stderr,
 *       then answers N/10 + 1 + N events: poll -> pending -> unmask ->
 *       notify; prints {"name":"c-echo","replies":R,"cpu_ns_per_reply":F}
 *       (CPU over the last N replies, those of the client's timed round trips).
 *   evtchn_pingpong client <P> <N>
 *       binds to port P of domain 0, drains the bind-time event, then runs
 *       N/10 + 1 warm-up and N timed round trips notify -> poll -> pending
 *       -> unmask; prints {"name":"c-client","roundtrips":N,
 *       "ns_per_roundtrip":F,"cpu_ns_per_roundtrip":F} (its own CPU only).
 * Exit:   0 on success; 1 with a message on stderr naming the failed call
 *         and errno (for example when /dev/xen/evtchn is absent).
 * Build:  gcc -O2 -Wall -o evtchn_pingpong evtchn_pingpong.c -lxenevtchn
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <xenevtchn.h>

static void die(const char *call)
{
    fprintf(stderr, "evtchn_pingpong: %s failed: %s (errno %d)\n", call,
            strerror(errno), errno);
    exit(1);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        die("getrusage");
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

/* Waits until `expect` is pending on h (poll first: pending() blocks), then unmasks it. */
static void wait_port(xenevtchn_handle *h, int fd, evtchn_port_t expect)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    for (;;) {
        int r = poll(&pfd, 1, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("poll");
        break;
    }
    xenevtchn_port_or_error_t got = xenevtchn_pending(h);
    if (got < 0)
        die("xenevtchn_pending");
    if ((evtchn_port_t)got != expect) {
        fprintf(stderr, "evtchn_pingpong: pending returned port %d, expected %u\n",
                (int)got, expect);
        exit(1);
    }
    if (xenevtchn_unmask(h, expect) < 0)
        die("xenevtchn_unmask");
}

static void roundtrips(xenevtchn_handle *h1, int fd1, evtchn_port_t p1,
                       xenevtchn_handle *h2, int fd2, evtchn_port_t p2, long n)
{
    for (long i = 0; i < n; i++) {
        if (xenevtchn_notify(h1, p1) < 0)
            die("xenevtchn_notify(p1)");
        wait_port(h2, fd2, p2);
        if (xenevtchn_notify(h2, p2) < 0)
            die("xenevtchn_notify(p2)");
        wait_port(h1, fd1, p1);
    }
}

static int echo(long n)
{
    xenevtchn_handle *h = xenevtchn_open(NULL, 0);
    if (!h)
        die("xenevtchn_open");
    xenevtchn_port_or_error_t p = xenevtchn_bind_unbound_port(h, 0);
    if (p < 0)
        die("xenevtchn_bind_unbound_port");
    int fd = xenevtchn_fd(h);
    fprintf(stderr, "{\"port\":%d}\n", (int)p); /* stderr: stdout is for the result */
    fflush(stderr);
    long warm = n / 10 + 1, replies = warm + n;
    double c0 = 0;
    for (long i = 0; i < replies; i++) {
        if (i == warm)
            c0 = cpu_ns(); /* the timed replies only, as the client times its round trips */
        wait_port(h, fd, (evtchn_port_t)p);
        if (xenevtchn_notify(h, (evtchn_port_t)p) < 0)
            die("xenevtchn_notify");
    }
    printf("{\"name\":\"c-echo\",\"replies\":%ld,\"cpu_ns_per_reply\":%.1f}\n", replies,
           (cpu_ns() - c0) / (double)n);
    xenevtchn_unbind(h, (evtchn_port_t)p);
    xenevtchn_close(h);
    return 0;
}

static void client_roundtrips(xenevtchn_handle *h, int fd, evtchn_port_t p, long n)
{
    for (long i = 0; i < n; i++) {
        if (xenevtchn_notify(h, p) < 0)
            die("xenevtchn_notify");
        wait_port(h, fd, p);
    }
}

static int client(long remote, long n)
{
    xenevtchn_handle *h = xenevtchn_open(NULL, 0);
    if (!h)
        die("xenevtchn_open");
    xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(h, 0, (evtchn_port_t)remote);
    if (p < 0)
        die("xenevtchn_bind_interdomain");
    int fd = xenevtchn_fd(h);
    wait_port(h, fd, (evtchn_port_t)p); /* the bind-time event */
    client_roundtrips(h, fd, (evtchn_port_t)p, n / 10 + 1);
    double t0 = now_ns(), c0 = cpu_ns();
    client_roundtrips(h, fd, (evtchn_port_t)p, n);
    double rt = (now_ns() - t0) / (double)n, cpu = (cpu_ns() - c0) / (double)n;
    printf("{\"name\":\"c-client\",\"roundtrips\":%ld,\"ns_per_roundtrip\":%.1f,"
           "\"cpu_ns_per_roundtrip\":%.1f}\n", n, rt, cpu);
    xenevtchn_unbind(h, (evtchn_port_t)p);
    xenevtchn_close(h);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "echo") == 0 && strtol(argv[2], NULL, 10) > 0)
        return echo(strtol(argv[2], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "client") == 0 && strtol(argv[3], NULL, 10) > 0)
        return client(strtol(argv[2], NULL, 10), strtol(argv[3], NULL, 10));
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    if (n <= 0) {
        fprintf(stderr, "usage: evtchn_pingpong [N>0] | echo <N> | client <port> <N>\n");
        return 1;
    }
    xenevtchn_handle *h1 = xenevtchn_open(NULL, 0);
    if (!h1)
        die("xenevtchn_open(h1)");
    xenevtchn_handle *h2 = xenevtchn_open(NULL, 0);
    if (!h2)
        die("xenevtchn_open(h2)");
    xenevtchn_port_or_error_t p1 = xenevtchn_bind_unbound_port(h1, 0);
    if (p1 < 0)
        die("xenevtchn_bind_unbound_port");
    xenevtchn_port_or_error_t p2 = xenevtchn_bind_interdomain(h2, 0, p1);
    if (p2 < 0)
        die("xenevtchn_bind_interdomain");
    int fd1 = xenevtchn_fd(h1), fd2 = xenevtchn_fd(h2);
    wait_port(h2, fd2, p2); /* the event Xen raises on the binder's port at bind */

    roundtrips(h1, fd1, p1, h2, fd2, p2, n / 10 + 1); /* warm-up */
    double t0 = now_ns(), c0 = cpu_ns();
    roundtrips(h1, fd1, p1, h2, fd2, p2, n);
    double rt_ns = (now_ns() - t0) / (double)n, rt_cpu = (cpu_ns() - c0) / (double)n;

    t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (xenevtchn_notify(h1, p1) < 0)
            die("xenevtchn_notify(bare)");
    double notify_ns = (now_ns() - t0) / (double)n;
    wait_port(h2, fd2, p2); /* drain the one coalesced event */

    printf("{\"name\":\"c\",\"roundtrips\":%ld,\"ns_per_roundtrip\":%.1f,\"notify_ns\":%.1f,"
           "\"cpu_ns_per_roundtrip\":%.1f}\n", n, rt_ns, notify_ns, rt_cpu);
    xenevtchn_unbind(h2, p2);
    xenevtchn_unbind(h1, p1);
    xenevtchn_close(h2);
    xenevtchn_close(h1);
    return 0;
}
