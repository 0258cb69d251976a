/* clock.c - see clock.h. */
#include "clock.h"

#include <unistd.h>

static uint64_t read_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t clock_wall_ms(void)
{
	return read_ms(CLOCK_REALTIME);
}

uint64_t clock_mono_ms(void)
{
	return read_ms(CLOCK_MONOTONIC);
}

struct timespec clock_deadline(uint64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

void pacer_init(struct pacer *p, uint64_t bytes_per_s)
{
	p->bytes_per_s = bytes_per_s;
	p->start_ms = clock_mono_ms();
	p->bytes = 0;
}

void pacer_take(struct pacer *p, uint64_t bytes)
{
	p->bytes += bytes;
}

uint64_t pacer_wait_ms(const struct pacer *p)
{
	uint64_t due_ms, elapsed_ms;

	if (!p->bytes_per_s)
		return 0;
	/* when the bytes so far are due at the rate (in ms, without overflow
	 * for any size a save can have) */
	due_ms = p->bytes / p->bytes_per_s * 1000u + p->bytes % p->bytes_per_s * 1000u / p->bytes_per_s;
	elapsed_ms = clock_mono_ms() - p->start_ms;
	return due_ms > elapsed_ms ? due_ms - elapsed_ms : 0;
}

void pacer_sleep(const struct pacer *p, uint64_t slice_ms, bool (*is_stopped)(void *arg),
		 void *arg)
{
	uint64_t ms;

	while ((ms = pacer_wait_ms(p)) > 0 && !is_stopped(arg))
		usleep((useconds_t)(ms < slice_ms ? ms : slice_ms) * 1000u);
}
