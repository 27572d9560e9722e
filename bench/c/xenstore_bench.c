/*
 * xenstore_bench.c - C baseline for bench/xenstore.ts, over libxenstore.
 *
 * What it does, on one xs_open() handle (the socket, else /dev/xen/xenbus,
 * as libxenstore decides; XENSTORED_PATH is honoured by libxenstore):
 *   read  x1:  N xs_read of one of 64 nodes, one thread
 *   read  x64: N xs_read shared by 64 threads on the same handle (libxenstore
 *              serialises requests on a handle, so this is what "64 requests
 *              in flight" costs through it)
 *   write x1, write x64: the same with xs_write of a 16-byte value
 *   watch: N/10 times, xs_write on the handle, then xs_read_watch on a second
 *          handle that watches the node (the latency of one event)
 * Each loop is preceded by a warm-up of N/10 operations. All nodes live
 * under /xenchan-bench/c-<pid> and are removed at the end.
 *
 * Usage:  xenstore_bench [N]      (N defaults to 10000, at least 64)
 * Output: one line of JSON per row on stdout, the same shape as the TS bench:
 *     {"name":"c","transport":"libxenstore","op":"read","inflight":1,"ops":N,
 *      "ops_per_s":F,"us_per_op":F}
 *     {"name":"c","transport":"libxenstore","op":"watch","events":M,"us_mean":F,
 *      "us_p50":F,"us_p99":F}
 * Exit:   0 on success; 1 with a message on stderr naming the failed call
 *         and errno.
 * Build:  gcc -O2 -Wall -o xenstore_bench xenstore_bench.c -lxenstore -lpthread
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#define NODES 64
#define THREADS 64

static struct xs_handle *h;
static char base[128];
static char nodes[NODES][192];
static const char value[] = "xxxxxxxxxxxxxxxx";
static long total;
static long next_op;
static int do_write;
static pthread_mutex_t counter = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *call)
{
    fprintf(stderr, "xenstore_bench: %s failed: %s (errno %d)\n", call, strerror(errno), errno);
    exit(1);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void one_op(long i)
{
    const char *path = nodes[i % NODES];
    if (do_write) {
        if (!xs_write(h, XBT_NULL, path, value, sizeof(value) - 1)) die("xs_write");
    } else {
        unsigned int len;
        char *v = xs_read(h, XBT_NULL, path, &len);
        if (!v) die("xs_read");
        free(v);
    }
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&counter);
        long i = next_op < total ? next_op++ : -1;
        pthread_mutex_unlock(&counter);
        if (i < 0) return NULL;
        one_op(i);
    }
}

static void run(long count, int threads)
{
    total = count;
    next_op = 0;
    if (threads == 1) {
        worker(NULL);
        return;
    }
    pthread_t t[THREADS];
    for (int k = 0; k < threads; k++)
        if (pthread_create(&t[k], NULL, worker, NULL) != 0) die("pthread_create");
    for (int k = 0; k < threads; k++) pthread_join(t[k], NULL);
}

static void throughput(const char *op, int threads, long n)
{
    do_write = strcmp(op, "write") == 0;
    run(n / 10 > NODES ? n / 10 : NODES, threads);
    double start = now_ns();
    run(n, threads);
    double ns = now_ns() - start;
    printf("{\"name\":\"c\",\"transport\":\"libxenstore\",\"op\":\"%s\",\"inflight\":%d,"
           "\"ops\":%ld,\"ops_per_s\":%.0f,\"us_per_op\":%.3f}\n",
           op, threads, n, n / (ns / 1e9), ns / 1e3 / n);
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void watch_latency(long n)
{
    long events = n / 10 > 10 ? n / 10 : 10;
    char node[192];
    snprintf(node, sizeof(node), "%s/watched", base);
    if (!xs_write(h, XBT_NULL, node, "0", 1)) die("xs_write");
    struct xs_handle *w = xs_open(0);
    if (!w) die("xs_open");
    if (!xs_watch(w, node, "bench")) die("xs_watch");
    unsigned int num;
    char **vec = xs_read_watch(w, &num); /* the initial event */
    if (!vec) die("xs_read_watch");
    free(vec);
    double *samples = malloc(sizeof(double) * events);
    if (!samples) die("malloc");
    for (long i = 0; i < events; i++) {
        char text[32];
        int len = snprintf(text, sizeof(text), "%ld", i);
        double start = now_ns();
        if (!xs_write(h, XBT_NULL, node, text, len)) die("xs_write");
        vec = xs_read_watch(w, &num);
        if (!vec) die("xs_read_watch");
        samples[i] = (now_ns() - start) / 1e3;
        free(vec);
    }
    xs_unwatch(w, node, "bench");
    xs_close(w);
    qsort(samples, events, sizeof(double), cmp_double);
    double sum = 0;
    for (long i = 0; i < events; i++) sum += samples[i];
    printf("{\"name\":\"c\",\"transport\":\"libxenstore\",\"op\":\"watch\",\"events\":%ld,"
           "\"us_mean\":%.3f,\"us_p50\":%.3f,\"us_p99\":%.3f}\n",
           events, sum / events, samples[events / 2], samples[(long)(events * 0.99)]);
    free(samples);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    if (n < NODES) {
        fprintf(stderr, "xenstore_bench: N must be at least %d\n", NODES);
        return 1;
    }
    h = xs_open(0);
    if (!h) die("xs_open");
    snprintf(base, sizeof(base), "/xenchan-bench/c-%d", (int)getpid());
    for (int i = 0; i < NODES; i++) {
        snprintf(nodes[i], sizeof(nodes[i]), "%s/k%d", base, i);
        if (!xs_write(h, XBT_NULL, nodes[i], value, sizeof(value) - 1)) die("xs_write");
    }
    throughput("read", 1, n);
    throughput("read", THREADS, n);
    throughput("write", 1, n);
    throughput("write", THREADS, n);
    watch_latency(n);
    xs_rm(h, XBT_NULL, base);
    xs_close(h);
    return 0;
}
