/*
 * clock.h - the two clocks understudy reads, in milliseconds.
 *
 * Wall time (CLOCK_REALTIME) is what goes on the record: commit times in the
 * journal, heartbeat times, lag against them. Monotonic time (CLOCK_MONOTONIC)
 * measures intervals: deadlines, backoff, timeouts. condition variables here
 * use the default (realtime) clock, so clock_deadline turns a wait of ms into
 * the absolute struct timespec pthread_cond_timedwait wants.
 */
#ifndef US_CLOCK_H
#define US_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

uint64_t clock_wall_ms(void);
uint64_t clock_mono_ms(void);
/* The realtime instant ms from now. */
struct timespec clock_deadline(uint64_t ms);

/* Paces a flow of bytes at a rate: pacer_take counts what went, and
 * pacer_wait_ms says how long to wait before the next. The caller sleeps
 * (in slices it can interrupt), so that pacing never holds a shutdown. */
struct pacer {
	uint64_t bytes_per_s;  /* 0: no bound */
	uint64_t start_ms;     /* monotonic */
	uint64_t bytes;
};
void pacer_init(struct pacer *p, uint64_t bytes_per_s);
void pacer_take(struct pacer *p, uint64_t bytes);
uint64_t pacer_wait_ms(const struct pacer *p);
/* Sleeps until the bytes taken so far are due, in slices of at most
 * slice_ms, giving up as soon as is_stopped(arg) says so. */
void pacer_sleep(const struct pacer *p, uint64_t slice_ms, bool (*is_stopped)(void *arg),
		 void *arg);

#endif
