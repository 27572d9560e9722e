/*
 * doorbell_eventfd.c - C baseline for bench/doorbell.ts.
 *
 * What it does: creates one eventfd (EFD_NONBLOCK | EFD_CLOEXEC, as
 * ffi/eventfd.ts does) and times two loops of N iterations each:
 *     rw:  write(efd, 1) -> read(efd)                    (no waiting)
 *     seq: write(efd, 1) -> poll(efd, POLLIN, -1) -> read(efd)
 * Each read must return exactly 1 (the counter the write added); anything
 * else is an error. A warm-up of N/10 iterations runs before each loop.
 * Each loop is also timed in CPU time (getrusage, user + system).
 *
 * Usage:  doorbell_eventfd [N]      (N defaults to 100000)
 * Output: ONE line of JSON on stdout:
 *     {"name":"c","iterations":N,"rw_ns":F,"seq_ns":F,"rw_cpu_ns":F,"seq_cpu_ns":F}
 *     (nanoseconds per iteration; *_cpu_ns: CPU time per iteration)
 * Exit:   0 on success; 1 with a message on stderr naming the failed call
 *         and errno.
 * Build:  gcc -O2 -Wall -o doorbell_eventfd doorbell_eventfd.c
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void die(const char *call)
{
    fprintf(stderr, "doorbell_eventfd: %s failed: %s (errno %d)\n", call,
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

static void signal_one(int efd)
{
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) != (ssize_t)sizeof one)
        die("write");
}

static void read_one(int efd)
{
    uint64_t value = 0;
    if (read(efd, &value, sizeof value) != (ssize_t)sizeof value)
        die("read");
    if (value != 1) {
        fprintf(stderr, "doorbell_eventfd: read %llu, expected 1\n",
                (unsigned long long)value);
        exit(1);
    }
}

static void wait_readable(int efd)
{
    struct pollfd pfd = { .fd = efd, .events = POLLIN };
    for (;;) {
        int r = poll(&pfd, 1, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("poll");
        if (!(pfd.revents & POLLIN)) {
            fprintf(stderr, "doorbell_eventfd: poll revents 0x%x\n", pfd.revents);
            exit(1);
        }
        return;
    }
}

static void rw_loop(int efd, long n)
{
    for (long i = 0; i < n; i++) {
        signal_one(efd);
        read_one(efd);
    }
}

static void seq_loop(int efd, long n)
{
    for (long i = 0; i < n; i++) {
        signal_one(efd);
        wait_readable(efd);
        read_one(efd);
    }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    if (n <= 0) {
        fprintf(stderr, "usage: doorbell_eventfd [N > 0]\n");
        return 1;
    }
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0)
        die("eventfd");

    rw_loop(efd, n / 10 + 1);
    double t0 = now_ns(), c0 = cpu_ns();
    rw_loop(efd, n);
    double rw_ns = (now_ns() - t0) / (double)n, rw_cpu = (cpu_ns() - c0) / (double)n;

    seq_loop(efd, n / 10 + 1);
    t0 = now_ns();
    c0 = cpu_ns();
    seq_loop(efd, n);
    double seq_ns = (now_ns() - t0) / (double)n, seq_cpu = (cpu_ns() - c0) / (double)n;

    close(efd);
    printf("{\"name\":\"c\",\"iterations\":%ld,\"rw_ns\":%.1f,\"seq_ns\":%.1f,"
           "\"rw_cpu_ns\":%.1f,\"seq_cpu_ns\":%.1f}\n",
           n, rw_ns, seq_ns, rw_cpu, seq_cpu);
    return 0;
}
