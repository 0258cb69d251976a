/*
 * rpc_pump.c - a server stream fed by a thread (rpc_pump.h).
 */
#include "rpc_pump.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "us_limits.h"

/* The send in flight has been taken by grpc (or the call died): runs on the
 * call's worker, and only wakes the feeding thread. */
static void on_sent(struct rpc_call *call, void *arg)
{
	struct rpc_pump *p = arg;

	(void)call;
	pthread_mutex_lock(&p->mu);
	p->is_sending = false;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void rpc_pump_init(struct rpc_pump *p, struct rpc_call *call)
{
	p->call = call;
	p->is_sending = false;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
}

void rpc_pump_release(struct rpc_pump *p)
{
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
}

void rpc_pump_wait(struct rpc_pump *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->is_sending)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

int rpc_pump_send(struct rpc_pump *p, const uint8_t *msg, size_t len, struct us_err *err)
{
	int rc;

	rpc_pump_wait(p);
	if (rpc_call_is_cancelled(p->call))
		return err_set(err, US_ECANCELLED, "the call was cancelled");
	p->is_sending = true; /* no send in flight: on_sent cannot race this */
	if ((rc = rpc_call_send(p->call, msg, len, on_sent, p))) {
		p->is_sending = false;
		return err_set(err, rc, "cannot send an answer");
	}
	return 0;
}

int rpc_pump_start(void *(*fn)(void *), void *arg, const char *what, struct us_err *err)
{
	pthread_attr_t attr;
	pthread_t thread;
	int rc = 0;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, fn, arg) != 0)
		rc = err_set(err, US_ENOMEM, "cannot start a thread for the %s", what);
	pthread_attr_destroy(&attr);
	return rc;
}

void rpc_pump_lower_priority(void)
{
	/* raising one's own nice value needs no privilege: it does not fail */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), US_SAVE_NICE);
}
