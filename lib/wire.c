/* wire.c - see wire.h. */
#include "wire.h"

#include "rpc.h"

#include <string.h>

#include "us_limits.h"


/* Reads a varint at *pos; 0 or -1 when it runs past len or over 10 bytes. */
static int read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned shift = 0; shift < 70; shift += 7) {
		uint8_t b;

		if (*pos >= len)
			return -1;
		b = p[(*pos)++];
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

static int check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
		 struct us_err *err)
{
	size_t pos = 0;

	if (depth > US_WIRE_MAX_DEPTH)
		return err_set(err, US_EINVAL, "%s nested deeper than %d levels", d->name,
			       US_WIRE_MAX_DEPTH);
	while (pos < len) {
		const ProtobufCFieldDescriptor *fd;
		uint64_t tag, n;

		if (read_varint(p, len, &pos, &tag))
			return err_set(err, US_EINVAL, "%s does not decode: bad tag at byte %zu",
				       d->name, pos);
		switch (tag & 7) {
		case 0: /* varint */
			if (read_varint(p, len, &pos, &n))
				return err_set(err, US_EINVAL, "%s does not decode: bad varint",
					       d->name);
			continue;
		case 1: /* 64-bit */
			n = 8;
			break;
		case 5: /* 32-bit */
			n = 4;
			break;
		case 2: /* length-delimited */
			if (read_varint(p, len, &pos, &n))
				return err_set(err, US_EINVAL, "%s does not decode: bad length",
					       d->name);
			break;
		default: /* groups (never used by our .proto) and invalid types */
			return err_set(err, US_EINVAL, "%s does not decode: wire type %u",
				       d->name, (unsigned)(tag & 7));
		}
		if (n > len - pos)
			return err_set(err, US_EINVAL,
				       "%s does not decode: field %llu runs past the message",
				       d->name, (unsigned long long)(tag >> 3));
		fd = (tag & 7) == 2 && tag >> 3 <= UINT32_MAX
			     ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
			     : NULL;
		if (fd && fd->type == PROTOBUF_C_TYPE_STRING && memchr(p + pos, 0, n))
			return err_set(err, US_EINVAL, "%s.%s holds a NUL byte", d->name, fd->name);
		if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
			int rc = check(fd->descriptor, p + pos, n, depth + 1, err);

			if (rc)
				return rc;
		}
		pos += n;
	}
	return 0;
}

int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
	       struct us_err *err)
{
	return check(d, p, len, 0, err);
}

ProtobufCMessage *wire_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
			      struct us_err *err)
{
	ProtobufCMessage *m;

	if (wire_check(d, p, len, err))
		return NULL;
	m = protobuf_c_message_unpack(d, NULL, len, p);
	if (!m)
		err_set(err, US_EINVAL, "%s of %zu bytes does not decode", d->name, len);
	return m;
}

int wire_pack(const ProtobufCMessage *msg, struct buf *out)
{
	size_t len = protobuf_c_message_get_packed_size(msg);

	buf_reset(out);
	if (buf_reserve(out, len ? len : 1))
		return US_ENOMEM;
	out->len = protobuf_c_message_pack(msg, out->p);
	return 0;
}

void wire_finish(struct rpc_call *call, const ProtobufCMessage *msg)
{
	struct buf b;

	buf_init(&b);
	if (wire_pack(msg, &b))
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
	else
		rpc_call_finish(call, 0, NULL, b.p, b.len);
	buf_release(&b);
}
