/*
 * rpc_pump.h - a server stream fed by a thread of the handler's own (a
 * save, a report): the thread makes the next message while grpc sends the
 * one before, one message in flight, and waits for grpc to take it before
 * sending the next. The gRPC worker only runs the send's completion, which
 * wakes the thread (rpc.h: a handler must not block its worker).
 */
#ifndef US_RPC_PUMP_H
#define US_RPC_PUMP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rpc.h"

/* Embedded struct: rpc_pump_init, rpc_pump_release. */
struct rpc_pump {
	struct rpc_call *call;
	pthread_mutex_t mu;          /* guards is_sending */
	pthread_cond_t cv;
	bool is_sending;             /* a message is in flight */
};

void rpc_pump_init(struct rpc_pump *p, struct rpc_call *call);
void rpc_pump_release(struct rpc_pump *p);

/* Waits until the message in flight (if any) has been taken, then sends
 * msg (len bytes, copied). US_ECANCELLED when the call has died, or the
 * code of a send grpc refused, with err set; the caller then finishes the
 * call (after rpc_pump_wait). */
int rpc_pump_send(struct rpc_pump *p, const uint8_t *msg, size_t len, struct us_err *err);

/* Waits until the message in flight (if any) has been taken. */
void rpc_pump_wait(struct rpc_pump *p);

/* Runs fn(arg) on a new detached thread: 0, or US_ENOMEM with err set
 * ("cannot start a thread for the WHAT"). */
int rpc_pump_start(void *(*fn)(void *), void *arg, const char *what, struct us_err *err);

/* Lowers the calling thread's priority to US_SAVE_NICE (Linux: this
 * thread's nice value alone; threads it starts inherit it): a thread that
 * writes saves or reports runs on the CPU the stream and the commits
 * leave. */
void rpc_pump_lower_priority(void);

#endif
