/*
 * fifo_pingpong.c - the host stand-in for a cross-process event channel
 * round trip, and its C baseline (bench/fd_roundtrip.ts).
 *
 * Two named pipes in <dir>, "ping" and "pong" (made by the caller with
 * mkfifo), opened O_RDWR so that neither open waits for the other side.
 *   echo   <dir>      waits for a byte on ping (poll, then read), answers
 *                     with one byte on pong, until it reads 'q'; then prints
 *                     {"name":"echo","cpu_ns":F,"replies":N}: its own CPU
 *                     time (getrusage user + system) while it served.
 *   client <dir> <N>  N/10 warm-up then N round trips: write ping, poll pong
 *                     (blocking), read; sends 'q' and prints
 *                     {"name":"c","roundtrips":N,"ns_per_roundtrip":F,
 *                      "cpu_ns_per_roundtrip":F} (its own CPU time only).
 * The echo peer is the same program for the C and the TypeScript clients.
 * Exit: 0 on success; 1 with the failed call and errno on stderr.
 * Build: gcc -O2 -Wall -o fifo_pingpong fifo_pingpong.c
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void die(const char *call)
{
    fprintf(stderr, "fifo_pingpong: %s failed: %s (errno %d)\n", call, strerror(errno), errno);
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
    if (getrusage(RUSAGE_SELF, &ru) < 0) die("getrusage");
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

static int open_fifo(const char *dir, const char *name)
{
    char path[4096];
    int fd;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open");
    return fd;
}

static char wait_byte(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR) die("poll");
    if (read(fd, &c, 1) != 1) die("read");
    return c;
}

static void put_byte(int fd, char c)
{
    if (write(fd, &c, 1) != 1) die("write");
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "echo") == 0) {
        int ping = open_fifo(argv[2], "ping"), pong = open_fifo(argv[2], "pong");
        double t0 = cpu_ns();
        long replies = 0;
        while (wait_byte(ping) != 'q') {
            put_byte(pong, 'p');
            replies++;
        }
        printf("{\"name\":\"echo\",\"cpu_ns\":%.0f,\"replies\":%ld}\n", cpu_ns() - t0, replies);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "client") == 0) {
        int ping = open_fifo(argv[2], "ping"), pong = open_fifo(argv[2], "pong");
        long n = atol(argv[3]), i;
        double t0, c0, t, c;
        if (n <= 0) return 2;
        for (i = 0; i < n / 10 + 1; i++) {
            put_byte(ping, 'x');
            wait_byte(pong);
        }
        t0 = now_ns();
        c0 = cpu_ns();
        for (i = 0; i < n; i++) {
            put_byte(ping, 'x');
            wait_byte(pong);
        }
        t = now_ns() - t0;
        c = cpu_ns() - c0;
        put_byte(ping, 'q');
        printf("{\"name\":\"c\",\"roundtrips\":%ld,\"ns_per_roundtrip\":%.1f,"
               "\"cpu_ns_per_roundtrip\":%.1f}\n", n, t / n, c / n);
        return 0;
    }
    fprintf(stderr, "usage: fifo_pingpong echo <dir> | client <dir> <N>\n");
    return 2;
}
