/*
 * wire.h - protobuf messages taken from the network, checked before use.
 *
 * protobuf-c hands a `string` field over as a NUL-terminated C string, so a
 * name that holds a NUL byte ("site-a\0evil") would silently read as its
 * prefix ("site-a"). Names are bytes with a length on the wire: wire_unpack
 * walks the encoded message first, with the message's descriptor, and refuses
 * any string field (at any depth) that holds a NUL byte, naming the field;
 * only then does it unpack. Every message a daemon takes from a peer goes
 * through here.
 */
#ifndef US_WIRE_H
#define US_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "buf.h"
#include "err.h"

/* Checks the len bytes at p as an encoding of a message of type d: every
 * length-delimited field fits, every string field holds no NUL, nesting
 * stays within 32 levels. 0 or US_EINVAL with a message naming the field. */
int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
	       struct us_err *err);

/* wire_check, then protobuf-c's unpack. Returns a new message (the caller
 * frees it with protobuf_c_message_free_unpacked(msg, NULL)) or NULL with err
 * set (US_EINVAL). */
ProtobufCMessage *wire_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
			      struct us_err *err);

/* Packs msg into out (reset first). 0 or US_ENOMEM. */
int wire_pack(const ProtobufCMessage *msg, struct buf *out);

/* Finishes a unary call OK with msg packed as its answer (RESOURCE_EXHAUSTED
 * when out of memory). */
struct rpc_call;
void wire_finish(struct rpc_call *call, const ProtobufCMessage *msg);

#endif
