/* test_wire.c - lib/wire.h: names are bytes with a length on the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "understudy.pb-c.h"
#include "wire.h"

/* A packed Frame{Hello{namespace, node_id}} in a new buffer of *len bytes. */
static uint8_t *pack_hello(const char *ns, const char *node, size_t *len)
{
	Understudy__V1__Frame f;
	Understudy__V1__Hello h;
	uint8_t *p;

	understudy__v1__hello__init(&h);
	h.namespace_ = (char *)ns;
	h.node_id = (char *)node;
	h.generation = 1;
	h.last_seq = 7;
	h.protocol = 1;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_HELLO;
	f.hello = &h;
	*len = understudy__v1__frame__get_packed_size(&f);
	p = malloc(*len);
	assert_non_null(p);
	understudy__v1__frame__pack(&f, p);
	return p;
}

/* Replaces the first occurrence of byte from by to in p. */
static void poke(uint8_t *p, size_t len, uint8_t from, uint8_t to)
{
	uint8_t *q = memchr(p, from, len);

	assert_non_null(q);
	*q = to;
}

static void test_valid_unpacks(void **state)
{
	struct us_err err;
	size_t len;
	uint8_t *p = pack_hello("site-a", "node1", &len);
	Understudy__V1__Frame *f;

	(void)state;
	f = (Understudy__V1__Frame *)wire_unpack(&understudy__v1__frame__descriptor, p, len, &err);
	assert_non_null(f);
	assert_string_equal(f->hello->namespace_, "site-a");
	assert_int_equal(f->hello->last_seq, 7);
	understudy__v1__frame__free_unpacked(f, NULL);
	free(p);
}

/* "site-a#evil" with '#' turned into NUL on the wire: protobuf-c alone
 * reads "site-a"; wire_unpack refuses, naming the field. */
static void test_nul_in_nested_string(void **state)
{
	struct us_err err;
	size_t len;
	uint8_t *p = pack_hello("site-a#evil", "node1", &len);
	Understudy__V1__Frame *f;

	(void)state;
	poke(p, len, '#', 0);
	f = understudy__v1__frame__unpack(NULL, len, p);
	assert_non_null(f); /* what protobuf-c alone does: */
	assert_string_equal(f->hello->namespace_, "site-a");
	understudy__v1__frame__free_unpacked(f, NULL);
	assert_null(wire_unpack(&understudy__v1__frame__descriptor, p, len, &err));
	assert_int_equal(err.code, US_EINVAL);
	assert_non_null(strstr(err.msg, "namespace"));
	assert_non_null(strstr(err.msg, "NUL"));
	free(p);
	p = pack_hello("site-a", "no#de", &len);
	poke(p, len, '#', 0);
	assert_null(wire_unpack(&understudy__v1__frame__descriptor, p, len, &err));
	assert_non_null(strstr(err.msg, "node_id"));
	free(p);
}

/* Bytes fields may hold NUL (ids, bodies, blocks). */
static void test_nul_in_bytes_allowed(void **state)
{
	Understudy__V1__ReadRequest r;
	struct us_err err;
	uint8_t id[3] = {'a', 0, 'b'}, buf[64];
	size_t len;
	ProtobufCMessage *m;

	(void)state;
	understudy__v1__read_request__init(&r);
	r.namespace_ = "site-a";
	r.account = "ACC";
	r.file = "F";
	r.id.data = id;
	r.id.len = sizeof(id);
	len = understudy__v1__read_request__pack(&r, buf);
	m = wire_unpack(&understudy__v1__read_request__descriptor, buf, len, &err);
	assert_non_null(m);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Truncated at every length, and every single bit flipped: refused or
 * decoded, never a crash (ASan watches). */
static void test_truncated_and_flipped(void **state)
{
	struct us_err err;
	size_t len;
	uint8_t *p = pack_hello("site-a", "node1", &len);

	(void)state;
	for (size_t n = 0; n < len; n++) {
		ProtobufCMessage *m = wire_unpack(&understudy__v1__frame__descriptor, p, n, &err);

		if (m)
			protobuf_c_message_free_unpacked(m, NULL);
	}
	assert_null(wire_unpack(&understudy__v1__frame__descriptor, p, len - 1, &err));
	for (size_t i = 0; i < len * 8; i++) {
		ProtobufCMessage *m;

		p[i / 8] ^= (uint8_t)(1u << (i % 8));
		m = wire_unpack(&understudy__v1__frame__descriptor, p, len, &err);
		if (m)
			protobuf_c_message_free_unpacked(m, NULL);
		p[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	free(p);
	/* a length that runs past the end, and a varint of 11 bytes */
	{
		static const uint8_t past[] = {0x0a, 0x7f, 0x0a, 0x01, 'a'};
		static const uint8_t longv[] = {0x18, 0xff, 0xff, 0xff, 0xff, 0xff,
						0xff, 0xff, 0xff, 0xff, 0xff, 0x01};

		assert_int_equal(wire_check(&understudy__v1__frame__descriptor, past, sizeof(past),
					    &err), US_EINVAL);
		assert_non_null(strstr(err.msg, "runs past"));
		assert_int_equal(wire_check(&understudy__v1__hello__descriptor, longv,
					    sizeof(longv), &err), US_EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_unpacks),
		cmocka_unit_test(test_nul_in_nested_string),
		cmocka_unit_test(test_nul_in_bytes_allowed),
		cmocka_unit_test(test_truncated_and_flipped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
