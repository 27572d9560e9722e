/*
 * wait_costs.c: what the pieces of one wake-up cost in C, per call, on this
 * machine (the twin of bench/wait_costs.ts, which measures the same pieces
 * from JavaScript): poll(2) of an idle eventfd with no timeout, ppoll(2) of
 * a ready one, sched_yield(2), clock_gettime(CLOCK_MONOTONIC), and an
 * eventfd write + read pair. Prints one JSON line per piece:
 *   {"bench":"wait_costs","backend":"c","piece":"...","ns_per_call":N}
 * Usage: wait_costs [N]   (default 20000 calls a piece)
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void row(const char *piece, double ns, long n)
{
	printf("{\"bench\":\"wait_costs\",\"backend\":\"c\",\"piece\":\"%s\",\"ns_per_call\":%.1f}\n",
	       piece, ns / n);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	int idle = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int ready = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
	if (idle < 0 || ready < 0 || n <= 0) {
		perror("eventfd");
		return 1;
	}
	struct pollfd p = { .fd = idle, .events = POLLIN };
	double t0 = now_ns();
	for (long i = 0; i < n; i++) poll(&p, 1, 0);
	row("poll idle fd, no timeout", now_ns() - t0, n);

	struct pollfd r = { .fd = ready, .events = POLLIN };
	struct timespec budget = { 0, 1000000 };
	t0 = now_ns();
	for (long i = 0; i < n; i++) ppoll(&r, 1, &budget, NULL);
	row("ppoll ready fd", now_ns() - t0, n);

	t0 = now_ns();
	for (long i = 0; i < n; i++) sched_yield();
	row("sched_yield", now_ns() - t0, n);

	struct timespec ts;
	t0 = now_ns();
	for (long i = 0; i < n; i++) clock_gettime(CLOCK_MONOTONIC, &ts);
	row("clock_gettime", now_ns() - t0, n);

	uint64_t one = 1, got;
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (write(idle, &one, 8) != 8 || read(idle, &got, 8) != 8) {
			perror("eventfd write/read");
			return 1;
		}
	}
	row("eventfd write + read", now_ns() - t0, n);
	return 0;
}
