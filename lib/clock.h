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

#include <stdint.h>
#include <time.h>

uint64_t clock_wall_ms(void);
uint64_t clock_mono_ms(void);
/* The realtime instant ms from now. */
struct timespec clock_deadline(uint64_t ms);

#endif
