/*
 * scan_2l.c - C baseline for bench/abi_scan.ts: the same 2-level work as
 * plugins/abi/two_level.ts, written as Xen and Linux write it.
 *
 *   set_pending: xen/common/event_2l.c evtchn_2l_set_pending
 *   scan:        linux drivers/xen/events/events_2l.c evtchn_2l_handle_events
 *                (current_word_idx / current_bit_idx, cpu_evtchn_mask,
 *                start word scanned twice), inside the
 *                __xen_evtchn_do_upcall loop, clearing PENDING before the
 *                handler (the edge-IRQ ack) and calling the handler through
 *                a function pointer, as TypeScript calls its callback.
 *
 * 64-bit xen_ulong_t, one vCPU, ports 1..N unmasked, the rest masked.
 * Each round raises: dense = all of 1..N; sparse = 4 ports spread over
 * 1..N (1 + k*N/4); low = ports 1..4 (so N-4 ports stay idle); then scans.
 * Usage: scan_2l <N> <dense|sparse|low> <rounds>   (several triples allowed)
 * Prints one line per case: "N pattern rounds events nanoseconds".
 * Build: gcc -O2 -o scan_2l scan_2l.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define W 64
#define NR (W * W)
#define SPARSE 4

typedef uint64_t xen_ulong_t;

static xen_ulong_t evtchn_pending[W], evtchn_mask[W], cpu_evtchn_mask[W];
static xen_ulong_t evtchn_pending_sel;
static uint8_t evtchn_upcall_pending;
static unsigned current_word_idx, current_bit_idx;
static volatile uint64_t sink;

static void __attribute__((noinline)) deliver(unsigned port) { sink += port; }
static void (*volatile handler)(unsigned) = deliver;

static inline xen_ulong_t mask_lsbs(xen_ulong_t w, unsigned i) { return i >= W ? 0 : w & (~(xen_ulong_t)0 << i); }

/* evtchn_2l_set_pending + vcpu_mark_events_pending */
static void set_pending(unsigned port)
{
    xen_ulong_t bit = (xen_ulong_t)1 << (port % W);
    if (evtchn_pending[port / W] & bit) return;
    evtchn_pending[port / W] |= bit;
    if (!(evtchn_mask[port / W] & bit) && !(evtchn_pending_sel & ((xen_ulong_t)1 << (port / W)))) {
        evtchn_pending_sel |= (xen_ulong_t)1 << (port / W);
        evtchn_upcall_pending = 1;
    }
}

static inline xen_ulong_t active_evtchns(unsigned idx)
{
    return evtchn_pending[idx] & cpu_evtchn_mask[idx] & ~evtchn_mask[idx];
}

static unsigned handle_events(void)
{
    unsigned done = 0, start_word_idx, start_bit_idx, word_idx, bit_idx, i;
    xen_ulong_t pending_words = evtchn_pending_sel, pending_bits;
    evtchn_pending_sel = 0; /* xchg */
    start_word_idx = current_word_idx;
    start_bit_idx = current_bit_idx;
    word_idx = start_word_idx;
    for (i = 0; pending_words != 0; i++) {
        xen_ulong_t words = mask_lsbs(pending_words, word_idx);
        if (words == 0) {
            word_idx = 0;
            bit_idx = 0;
            continue;
        }
        word_idx = __builtin_ctzll(words);
        pending_bits = active_evtchns(word_idx);
        bit_idx = 0;
        if (word_idx == start_word_idx && i == 0) bit_idx = start_bit_idx;
        do {
            xen_ulong_t bits = mask_lsbs(pending_bits, bit_idx), bit;
            unsigned port;
            if (bits == 0) break;
            bit_idx = __builtin_ctzll(bits);
            port = word_idx * W + bit_idx;
            bit = (xen_ulong_t)1 << bit_idx;
            /* re-check as the TypeScript version does, then ack and handle */
            if ((evtchn_pending[word_idx] & bit) && !(evtchn_mask[word_idx] & bit) &&
                (cpu_evtchn_mask[word_idx] & bit)) {
                evtchn_pending[word_idx] &= ~bit;
                done++;
                handler(port);
            }
            bit_idx = (bit_idx + 1) % W;
            current_word_idx = bit_idx ? word_idx : (word_idx + 1) % W;
            current_bit_idx = bit_idx;
        } while (bit_idx != 0);
        if (word_idx != start_word_idx || i != 0) pending_words &= ~((xen_ulong_t)1 << word_idx);
        word_idx = (word_idx + 1) % W;
    }
    return done;
}

/* __xen_evtchn_do_upcall */
static unsigned scan(void)
{
    unsigned done = 0;
    do {
        evtchn_upcall_pending = 0;
        done += handle_events();
    } while (evtchn_upcall_pending);
    return done;
}

/* CPU time of this process: time spent waiting for a core on a loaded machine does not count. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t run(unsigned n, int dense, int low, unsigned rounds)
{
    unsigned ports[SPARSE], k, r, j;
    uint64_t events = 0;
    for (k = 0; k < SPARSE; k++) ports[k] = low ? k + 1 : 1 + (unsigned)((uint64_t)k * n / SPARSE);
    for (r = 0; r < rounds; r++) {
        if (dense)
            for (j = 1; j <= n; j++) set_pending(j);
        else
            for (k = 0; k < SPARSE; k++) set_pending(ports[k]);
        events += scan();
    }
    return events;
}

int main(int argc, char **argv)
{
    int a;
    for (a = 1; a + 2 < argc; a += 3) {
        unsigned n = (unsigned)atoi(argv[a]), rounds = (unsigned)atoi(argv[a + 2]), j;
        int dense = strcmp(argv[a + 1], "dense") == 0, low = strcmp(argv[a + 1], "low") == 0;
        uint64_t events;
        double t0;
        if (n < SPARSE || n >= NR) return 2;
        memset(evtchn_pending, 0, sizeof(evtchn_pending));
        memset(evtchn_mask, 0xff, sizeof(evtchn_mask));
        memset(cpu_evtchn_mask, 0xff, sizeof(cpu_evtchn_mask));
        evtchn_pending_sel = 0;
        evtchn_upcall_pending = 0;
        current_word_idx = current_bit_idx = 0;
        for (j = 1; j <= n; j++) evtchn_mask[j / W] &= ~((xen_ulong_t)1 << (j % W));
        run(n, dense, low, rounds / 5 + 1); /* warm-up */
        t0 = now_ns();
        events = run(n, dense, low, rounds);
        printf("%u %s %u %llu %.0f\n", n, argv[a + 1], rounds,
               (unsigned long long)events, now_ns() - t0);
    }
    return 0;
}
