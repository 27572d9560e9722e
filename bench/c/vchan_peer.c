/*
 * vchan_peer: a C libxenvchan peer for xenchan's interop tests and the vchan
 * benchmark (the baseline TypeScript is compared with). Written against
 * /usr/include/libxenvchan.h (Debian libxen-dev, Xen 4.17).
 *
 *   vchan_peer server|client echo|source|sink|pingpong DOMID PATH [BYTES [WRITE]]
 *
 *   echo      copy everything read back to the peer until it closes
 *   source    write BYTES bytes (default 64 MiB) in WRITE-byte writes
 *             (default 4096), then print a JSON row and close ("waits":
 *             writes that found too little space, so blocked)
 *   sink      read until the peer closes, then print a JSON row ("reads":
 *             reads that returned data, "waits": reads that found the ring
 *             empty, so blocked)
 *   pingpong  BYTES one-byte round trips (client side initiates), JSON row
 *
 * The server uses libxenvchan_server_init(NULL, DOMID, PATH, 0, 0) (rings of
 * 1 and 2 KiB, like vchan-socket-proxy) unless VCHAN_READ_MIN /
 * VCHAN_WRITE_MIN are set. Blocking mode. Exit 0 on success, 1 on failure.
 *
 * Build: gcc -O2 -o vchan_peer vchan_peer.c -lxenvchan
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libxenvchan.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t env_size(const char *name)
{
    const char *text = getenv(name);
    return text ? (size_t)strtoull(text, NULL, 10) : 0;
}

static int run_echo(struct libxenvchan *v)
{
    static char buf[65536];
    for (;;) {
        int n = libxenvchan_read(v, buf, sizeof buf);
        if (n <= 0)
            return 0; /* the peer closed */
        if (libxenvchan_write(v, buf, n) != n)
            return 0;
    }
}

static int run_source(struct libxenvchan *v, size_t bytes, size_t write_size)
{
    char *buf = calloc(1, write_size);
    if (!buf)
        return 1;
    memset(buf, 7, write_size);
    double t0 = now_seconds();
    size_t sent = 0;
    size_t waits = 0;
    while (sent < bytes) {
        size_t n = bytes - sent < write_size ? bytes - sent : write_size;
        if ((size_t)libxenvchan_buffer_space(v) < n)
            waits++;
        if (libxenvchan_write(v, buf, n) != (int)n) {
            fprintf(stderr, "vchan_peer: write failed after %zu bytes\n", sent);
            free(buf);
            return 1;
        }
        sent += n;
    }
    double seconds = now_seconds() - t0;
    printf("{\"bench\":\"vchan\",\"backend\":\"c\",\"mode\":\"source\",\"write\":%zu,"
           "\"bytes\":%zu,\"seconds\":%.4f,\"mbPerSecond\":%.1f,\"waits\":%zu}\n",
           write_size, sent, seconds, sent / seconds / 1e6, waits);
    free(buf);
    return 0;
}

static int run_sink(struct libxenvchan *v)
{
    static char buf[1 << 20];
    size_t got = 0, reads = 0, waits = 0;
    double t0 = 0;
    for (;;) {
        if (got > 0 && libxenvchan_data_ready(v) == 0)
            waits++;
        int n = libxenvchan_read(v, buf, sizeof buf);
        if (n <= 0)
            break;
        if (got == 0)
            t0 = now_seconds();
        got += n;
        reads++;
    }
    double seconds = got ? now_seconds() - t0 : 0;
    printf("{\"bench\":\"vchan\",\"backend\":\"c\",\"mode\":\"sink\",\"bytes\":%zu,"
           "\"seconds\":%.4f,\"mbPerSecond\":%.1f,\"reads\":%zu,\"waits\":%zu}\n",
           got, seconds, seconds > 0 ? got / seconds / 1e6 : 0.0, reads, waits);
    return 0;
}

static int run_pingpong(struct libxenvchan *v, int initiator, size_t rounds)
{
    char byte = 1;
    double t0 = now_seconds();
    for (size_t i = 0; i < rounds; i++) {
        if (initiator && libxenvchan_send(v, &byte, 1) != 1)
            return 1;
        if (libxenvchan_recv(v, &byte, 1) != 1)
            return 1;
        if (!initiator && libxenvchan_send(v, &byte, 1) != 1)
            return 1;
    }
    double seconds = now_seconds() - t0;
    if (initiator)
        printf("{\"bench\":\"vchan\",\"backend\":\"c\",\"mode\":\"pingpong\",\"rounds\":%zu,"
               "\"microsPerRound\":%.2f}\n",
               rounds, seconds * 1e6 / rounds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
        fprintf(stderr, "usage: %s server|client echo|source|sink|pingpong DOMID PATH "
                        "[BYTES [WRITE]]\n", argv[0]);
        return 2;
    }
    int server = strcmp(argv[1], "server") == 0;
    const char *mode = argv[2];
    int domid = atoi(argv[3]);
    const char *path = argv[4];
    size_t bytes = argc > 5 ? strtoull(argv[5], NULL, 10) : (size_t)64 << 20;
    size_t write_size = argc > 6 ? strtoull(argv[6], NULL, 10) : 4096;
    if (write_size == 0)
        write_size = 4096;

    struct libxenvchan *v = server
        ? libxenvchan_server_init(NULL, domid, path, env_size("VCHAN_READ_MIN"),
                                  env_size("VCHAN_WRITE_MIN"))
        : libxenvchan_client_init(NULL, domid, path);
    if (!v) {
        fprintf(stderr, "vchan_peer: %s_init failed: %s\n", argv[1], strerror(errno));
        return 1;
    }
    v->blocking = 1;
    if (server) {
        /* Wait for the client: is_open is 2 until it connects. */
        while (libxenvchan_is_open(v) == 2)
            libxenvchan_wait(v);
    }
    int rc;
    if (strcmp(mode, "echo") == 0)
        rc = run_echo(v);
    else if (strcmp(mode, "source") == 0)
        rc = run_source(v, bytes, write_size);
    else if (strcmp(mode, "sink") == 0)
        rc = run_sink(v);
    else if (strcmp(mode, "pingpong") == 0)
        rc = run_pingpong(v, !server, bytes);
    else {
        fprintf(stderr, "vchan_peer: unknown mode %s\n", mode);
        rc = 2;
    }
    libxenvchan_close(v);
    return rc;
}
