"""test_push_refusals.py - a malicious or broken site against Replication.Push
(SPEC "gRPC services", Guarantee 6).

python3-grpcio plays the site against a real understudy-archiver: it builds
the entry encoding and the block of docs/entry-format.md itself (XXH32 from
python3-xxhash, raw LZ4 blocks from python3-lz4), so the frames are exactly
what a site sends, and then breaks them one way at a time. First a VALID
stream is shown to work (Hello -> Welcome, Entries -> Progress with
durable_seq, the data readable through Store/Scan on the archiver), which
proves the encoding right; then every refusal case, each on a fresh Push call:

  - the refusal is the call's status (grpc.RpcError), with the exact code and
    a message that names the problem;
  - the archiver's state is unchanged afterwards: Admin/Status (generation,
    applied_seq, durable_seq, the namespaces listed) and the data through
    Store/ListFiles and Scan;
  - a correct stream still works right after it.

Checks data and status codes, never log text.

test_hello_refused_creates_no_namespace asserts what Guarantee 6 asks and the
archiver does not do yet: a Hello refused for its generation, for a listed
namespace never seen before, leaves that namespace created (archiver_get_ns
opens its store before on_hello checks the generation).
"""

import os
import queue
import struct
import time
import unittest

import harness
from harness import Proto, SystemTest, dump_namespace

try:
    import grpc
    import lz4.block
    import xxhash
    MISSING = None
except ImportError as e:  # tools/install-deps installs them
    MISSING = "python3-grpcio, python3-lz4 or python3-xxhash missing: %s" % e

NS = "site-a"
OTHER_NS = "site-x"        # configured too: the config lists namespaces
UNLISTED_NS = "site-b"     # not in the config: PERMISSION_DENIED
CALL_TIMEOUT_S = 20        # one Push call: a refusal comes at once, this only bounds a bug

# lib/us_limits.h
US_FRAME_MAX_RAW_BYTES = 64 * 1024 * 1024 + 8 * 1024 * 1024
US_BODY_MAX_BYTES = 16 * 1024 * 1024
US_RPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024 + 1024 * 1024
US_RPC_OVER_MAX_BYTES = US_RPC_MAX_MESSAGE_BYTES + 1024 * 1024

# ---- the entry encoding and the block (docs/entry-format.md) ------------------

WRITE, DELETE, CREATE_FILE, CLEAR_FILE, DELETE_FILE, SET_LOGGING = 1, 2, 3, 4, 5, 6
HEARTBEAT = 7
END = 0x80
DATA, DICT = 0, 1
BLOCK_MAGIC = b"USJB"
BLOCK_VERSION = 1


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def lstr(s):
    """str or bytes field: varint length, then the bytes."""
    if isinstance(s, str):
        s = s.encode()
    return varint(len(s)) + s


class Op:
    """One operation before it is an entry: its op and its encoded fields
    (what follows time_ms)."""

    def __init__(self, op, fields):
        self.op = op
        self.fields = fields


def write(account, file, id_, body, dict_=False):
    return Op(WRITE, lstr(account) + lstr(file) + bytes([DICT if dict_ else DATA])
              + lstr(id_) + lstr(body))


def delete(account, file, id_, dict_=False):
    return Op(DELETE, lstr(account) + lstr(file) + bytes([DICT if dict_ else DATA]) + lstr(id_))


def create_file(account, file, logged=True):
    return Op(CREATE_FILE, lstr(account) + lstr(file) + bytes([1 if logged else 0]))


def clear_file(account, file, dict_=False):
    return Op(CLEAR_FILE, lstr(account) + lstr(file) + bytes([DICT if dict_ else DATA]))


def heartbeat(value):
    return Op(HEARTBEAT, varint(value))


def entry(op, time_ms, is_end):
    """The bytes of one entry."""
    return bytes([op.op | (END if is_end else 0)]) + varint(time_ms) + op.fields


def commit(*ops, time_ms=None, end=True):
    """The entries of one commit: one time_ms, END on the last (unless end=False,
    which makes a commit that never ends)."""
    t = time_ms if time_ms is not None else int(time.time() * 1000)
    return [entry(op, t, end and i == len(ops) - 1) for i, op in enumerate(ops)]


def block(first_seq, entries, count=None):
    """An entry block: header, each entry with its varint length, XXH32."""
    body = bytearray(BLOCK_MAGIC)
    body.append(BLOCK_VERSION)
    body += struct.pack("<QI", first_seq, len(entries) if count is None else count)
    for e in entries:
        body += varint(len(e)) + e
    return bytes(body) + struct.pack("<I", xxhash.xxh32(bytes(body), seed=0).intdigest())


def fold_chain(chain, entries):
    """The history chain (docs/entry-format.md) after these entries."""
    for e in entries:
        chain = xxhash.xxh64(e[1:], seed=(chain + (e[0] & 0x7F)) & (2 ** 64 - 1)).intdigest()
    return chain


def lz4_raw(data):
    return lz4.block.compress(data, store_size=False)


# ---- the test -----------------------------------------------------------------

def _serialize(msg):
    """Frames as messages, or raw bytes sent as they are (an undecodable frame)."""
    return msg if isinstance(msg, (bytes, bytearray)) else msg.SerializeToString()


class PushCall:
    """One Push call: frames are queued to the request iterator as the test
    goes, acks read one at a time; close() half-closes."""

    def __init__(self, channel, proto):
        self.q = queue.Queue()
        self.closed = False
        push = channel.stream_stream("/understudy.v1.Replication/Push",
                                     request_serializer=_serialize,
                                     response_deserializer=proto.Ack.FromString)
        self.call = push(iter(self.q.get, None), timeout=CALL_TIMEOUT_S)

    def send(self, frame):
        self.q.put(frame)

    def recv(self):
        """The next Ack; None at a clean end; grpc.RpcError at a refusal."""
        try:
            return next(self.call)
        except StopIteration:
            return None

    def close(self):
        if not self.closed:
            self.closed = True
            self.q.put(None)


class PushRefusalTest(SystemTest):

    def setUp(self):
        if MISSING:
            raise unittest.SkipTest(MISSING)
        super().setUp()
        self.proto = Proto()
        self.arch = self.start_archiver(**{"namespace " + NS: {},
                                           "namespace " + OTHER_NS: {}})
        self.channel = self.proto.channel(self.arch.addr)
        self.stub = self.proto.stub(self.channel)
        self.calls = []
        self.time_ms = int(time.time() * 1000)
        self.next_item = 0
        self.chain = 0  # the history chain of what the archiver holds of NS

    def tearDown(self):
        for c in self.calls:
            c.close()
            c.call.cancel()
        self.channel.close()
        super().tearDown()

    # ---- frames

    def hello(self, ns=NS, generation=1, last_seq=None, protocol=3, node_id="py-site",
              chain=None, first_seq=None, first_chain=0):
        if last_seq is None:
            last_seq = self.applied(ns)
        if first_seq is None:
            first_seq = 1 if last_seq else 0
        return self.proto.Frame(hello=self.proto.Hello(
            namespace=ns, node_id=node_id, generation=generation, last_seq=last_seq,
            first_seq=first_seq, protocol=protocol, first_chain=first_chain,
            chain=self.chain if chain is None else chain))

    def entries(self, first_seq, entries, count=None, raw_len=None, block_first_seq=None,
                block_count=None, raw=None, compressed=None, prev_chain=None):
        """An Entries frame of these entry bytes at first_seq; each keyword
        overrides one field or one step, to break it."""
        if raw is None:
            raw = block(first_seq if block_first_seq is None else block_first_seq, entries,
                        count=block_count)
        return self.proto.Frame(entries=self.proto.Entries(
            first_seq=first_seq, count=len(entries) if count is None else count,
            raw_len=len(raw) if raw_len is None else raw_len,
            block=lz4_raw(raw) if compressed is None else compressed,
            prev_chain=self.chain if prev_chain is None else prev_chain))

    def new_time(self):
        self.time_ms += 1
        return self.time_ms

    # ---- state

    def ns_status(self, ns=NS):
        st = self.stub.Status(self.proto.StatusRequest(), timeout=CALL_TIMEOUT_S)
        self.assertEqual(st.node, "archiver")
        for n in st.namespaces:
            if n.namespace == ns:
                return n
        return None

    def applied(self, ns=NS):
        n = self.ns_status(ns)
        return n.applied_seq if n else 0

    def state(self):
        """What a refusal must not change: the namespaces the archiver lists,
        position and role of each, and every file and item of ours."""
        st = self.stub.Status(self.proto.StatusRequest(), timeout=CALL_TIMEOUT_S)
        positions = sorted((n.namespace, n.role, n.generation, n.applied_seq, n.durable_seq)
                           for n in st.namespaces)
        data = dump_namespace(self.stub, self.proto, NS) if self.ns_status(NS) else None
        return {"namespaces": positions, "data": data}

    # ---- pushes

    def open_push(self):
        c = PushCall(self.channel, self.proto)
        self.calls.append(c)
        return c

    def expect_welcome(self, call, applied):
        ack = call.recv()
        self.assertIsNotNone(ack, "the call ended without a Welcome")
        self.assertEqual(ack.WhichOneof("body"), "welcome", "first ack: %s" % ack)
        self.assertEqual(ack.welcome.generation, 1)
        self.assertEqual(ack.welcome.applied_seq, applied)
        self.assertLessEqual(ack.welcome.durable_seq, applied)
        self.assertEqual(ack.welcome.chain, self.chain, "the Welcome's history chain")
        return ack.welcome

    def wait_durable(self, call, seq):
        """Reads acks until a Progress says seq is applied and durable."""
        while True:
            try:
                ack = call.recv()
            except grpc.RpcError as e:
                self.fail("valid stream refused: %s %s" % (e.code(), e.details()))
            self.assertIsNotNone(ack, "the call ended before seq %d was durable" % seq)
            if ack.WhichOneof("body") == "progress" and ack.progress.durable_seq >= seq:
                self.assertEqual(ack.progress.applied_seq, seq)
                self.assertEqual(ack.progress.durable_seq, seq)
                return

    def push_valid(self, frames_of_commits):
        """One correct Push: Hello, then one Entries frame per list of commits
        (each commit a list of entry bytes), at the archiver's next seqs.
        Returns the last seq, once the archiver says it is durable; the call
        then ends cleanly."""
        applied = self.applied()
        n = sum(len(c) for commits in frames_of_commits for c in commits)
        call = self.open_push()
        call.send(self.hello(last_seq=applied + n))
        self.expect_welcome(call, applied)
        seq = applied + 1
        for commits in frames_of_commits:
            ents = [e for c in commits for e in c]
            call.send(self.entries(seq, ents))
            self.chain = fold_chain(self.chain, ents)
            seq += len(ents)
        self.wait_durable(call, seq - 1)
        call.close()
        while call.recv() is not None:  # the archiver ends the call OK at the half-close
            pass
        self.assertEqual(call.call.code(), grpc.StatusCode.OK)
        st = self.ns_status()
        self.assertEqual((st.applied_seq, st.durable_seq), (seq - 1, seq - 1))
        return seq - 1

    def push_one_item(self):
        """A correct stream still works: one WRITE commit, then read back."""
        self.next_item += 1
        id_ = b"after-%d" % self.next_item
        body = b"v\xfe%d" % self.next_item
        self.push_valid([[commit(write("ACC", "CUST", id_, body), time_ms=self.new_time())]])
        r = self.stub.Read(self.proto.ReadRequest(namespace=NS, account="ACC", file="CUST",
                                                  id=id_), timeout=CALL_TIMEOUT_S)
        self.assertEqual(r.body, body)

    def refused(self, frames, code, words, hello=True, case=""):
        """Sends (after a valid Hello, unless hello=False) frames on a fresh
        call and asserts that the call ends with code, whose message holds
        every word of words; that nothing changed; that a correct stream works
        afterwards. Returns the message."""
        before = self.state()
        applied = self.applied()
        call = self.open_push()
        if hello:
            call.send(self.hello())
            self.expect_welcome(call, applied)
        for f in frames:
            call.send(f)
        acks = []
        err = None
        try:
            while True:
                ack = call.recv()
                if ack is None:
                    break
                acks.append(ack)
                if ack.WhichOneof("body") == "progress" and ack.progress.applied_seq > applied:
                    call.close()  # applied: a bug; end the call rather than wait the deadline
        except grpc.RpcError as e:
            err = e
        finally:
            call.close()
        self.assertIsNotNone(err, "%s: not refused; the call ended %s with acks %s"
                             % (case, call.call.code(), acks))
        msg = err.details() or ""
        self.assertEqual(err.code(), code, "%s: refused with %s %r, want %s"
                         % (case, err.code(), msg, code))
        for w in words:
            self.assertIn(w.lower(), msg.lower(), "%s: message %r does not name %r"
                          % (case, msg, w))
        self.assertEqual(self.state(), before, "%s: the refusal changed the archiver" % case)
        self.push_one_item()
        return msg

    # ---- tests

    def test_doc_example_encodes(self):
        """The encoder of this test reproduces docs/entry-format.md's example
        byte for byte (so a refusal below is the archiver's, not a typo)."""
        e = entry(write("SALES", "CUST", b"C1", b"Ann\xfeParis"), 1764064800123, True)
        self.assertEqual(e.hex(), "81fbdad2d3ab330553414c4553044355535400024331"
                                  "09416e6efe5061726973")
        b = block(1042, [e])
        self.assertEqual(len(b), 54)
        self.assertEqual(b[:17].hex(), "55534a4201120400000000000001000000")
        self.assertEqual(b[-4:].hex(), "15feaa17")
        self.assertEqual(lz4.block.decompress(lz4_raw(b), uncompressed_size=len(b)), b)

    def test_valid_stream(self):
        """Hello -> Welcome; Entries of whole commits -> Progress; the data is
        on the archiver, exactly, through Scan and ListFiles."""
        body = b"NAME\xfeADDR 1\xfdADDR 2\xfcSUB\xfe\x01\x7f"
        t = self.new_time()
        last = self.push_valid([
            [commit(create_file("ACC", "CUST"), time_ms=t),
             commit(create_file("ACC", "TMP"), write("ACC", "TMP", b"x", b"y"),
                    time_ms=self.new_time())],
            [commit(write("ACC", "CUST", b"1001", body), write("ACC", "CUST", b"1002", b""),
                    write("ACC", "CUST", b"D1", b"dict", dict_=True),
                    write("ACC", "CUST", b"gone", b"z"), time_ms=self.new_time()),
             commit(delete("ACC", "CUST", b"gone"), time_ms=self.new_time()),
             commit(heartbeat(7), time_ms=self.new_time()),
             commit(clear_file("ACC", "TMP"), time_ms=self.new_time())],
        ])
        self.assertEqual(last, 10)
        data = dump_namespace(self.stub, self.proto, NS)
        self.assertEqual(sorted(data), [("ACC", "CUST"), ("ACC", "TMP")])
        self.assertEqual(data[("ACC", "CUST")]["data"], {b"1001": body, b"1002": b""})
        self.assertEqual(data[("ACC", "CUST")]["dict"], {b"D1": b"dict"})
        self.assertEqual(data[("ACC", "TMP")]["data"], {})
        st = self.ns_status()
        self.assertEqual((st.generation, st.applied_seq, st.durable_seq, st.master_seq),
                         (1, 10, 10, 10))
        # A second call resumes where the first stopped.
        self.push_one_item()
        self.assertEqual(self.applied(), 11)

    def test_hello_refusals(self):
        self.push_valid([[commit(create_file("ACC", "CUST"), time_ms=self.new_time()),
                          commit(write("ACC", "CUST", b"k", b"v"), time_ms=self.new_time())]])
        P = grpc.StatusCode
        nxt = lambda: self.applied() + 1  # noqa: E731
        self.refused([self.entries(nxt(), commit(write("ACC", "CUST", b"no", b"hello")))],
                     P.FAILED_PRECONDITION, ["Hello"], hello=False,
                     case="Entries as the first frame")
        self.refused([self.proto.Frame(heartbeat=self.proto.Heartbeat(time_ms=1, last_seq=1))],
                     P.FAILED_PRECONDITION, ["Hello"], hello=False,
                     case="Heartbeat as the first frame")
        self.refused([self.hello()], P.INVALID_ARGUMENT, ["second Hello"],
                     case="a second Hello")
        self.refused([self.hello(protocol=4)], P.FAILED_PRECONDITION, ["protocol 4"],
                     hello=False, case="protocol 4")
        self.refused([self.hello(protocol=2)], P.FAILED_PRECONDITION, ["protocol 2"],
                     hello=False, case="protocol 2 (full copies in bare chunks)")
        self.refused([self.hello(protocol=1)], P.FAILED_PRECONDITION, ["protocol 1"],
                     hello=False, case="protocol 1 (no history chain)")
        self.refused([self.hello(protocol=0)], P.FAILED_PRECONDITION, ["protocol 0"],
                     hello=False, case="protocol 0 (unset)")
        self.refused([self.hello(generation=2)], P.FAILED_PRECONDITION, ["generation 2"],
                     hello=False, case="generation ahead")
        self.refused([self.hello(generation=0)], P.INVALID_ARGUMENT, ["generation 0"],
                     hello=False, case="generation 0")
        # Names are bytes with a length: a NUL inside one is refused, never cut
        # at the NUL (then "site-a\0evil" would be taken for the live site-a).
        for bad in ("site-a\0evil", "probe\0ns", "\0"):
            self.refused([self.hello(ns=bad, last_seq=0)], P.INVALID_ARGUMENT,
                         ["namespace", "NUL"], hello=False, case="namespace %r" % bad)
        self.assertIsNone(self.ns_status("probe"))
        for bad in ("node\0x", "", "node id", "n" * 64):
            self.refused([self.hello(node_id=bad)], P.INVALID_ARGUMENT, ["node"],
                         hello=False, case="node id %r" % bad)
        # Bounds told by the peer are checked before they are stored or shown.
        big = 2 ** 64 - 1
        self.refused([self.hello(last_seq=big)], P.INVALID_ARGUMENT, ["last seq", str(big)],
                     hello=False, case="last_seq 2^64-1")
        self.refused([self.hello(generation=big)], P.INVALID_ARGUMENT, ["generation"],
                     hello=False, case="generation 2^64-1")
        self.refused([self.proto.Frame(heartbeat=self.proto.Heartbeat(time_ms=1, last_seq=big))],
                     P.INVALID_ARGUMENT, ["heartbeat", "last seq"], case="heartbeat 2^64-1")
        self.assertLess(self.ns_status().master_seq, 2 ** 32)
        behind = self.applied() - 1
        self.refused([self.hello(last_seq=behind)], P.FAILED_PRECONDITION,
                     ["behind", str(behind)], hello=False,
                     case="last_seq behind the archive")
        for bad in ("Site-A", "site a", "-site", "", "s" * 64, "site/../x", "site\u00e9"):
            self.refused([self.hello(ns=bad, last_seq=0)], P.INVALID_ARGUMENT, ["namespace"],
                         hello=False, case="namespace %r" % bad)
        self.refused([self.hello(ns=UNLISTED_NS, last_seq=0)], P.PERMISSION_DENIED,
                     [UNLISTED_NS, "not configured"], hello=False,
                     case="namespace not configured")
        self.assertIsNone(self.ns_status(UNLISTED_NS))

    def test_hello_refused_creates_no_namespace(self):
        """A refused Hello for a configured namespace never seen before leaves
        no namespace behind (Guarantee 6: changes nothing): not in Status, no
        store on disk."""
        self.push_valid([[commit(create_file("ACC", "CUST"), time_ms=self.new_time())]])
        self.assertIsNone(self.ns_status(OTHER_NS))
        call = self.open_push()
        call.send(self.hello(ns=OTHER_NS, generation=5, last_seq=3))
        with self.assertRaises(grpc.RpcError) as cm:
            while call.recv() is not None:
                pass
        call.close()
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION,
                         cm.exception.details())
        self.assertIn("generation 5", cm.exception.details())
        store_dir = os.path.join(self.arch.data_dir, "ns", OTHER_NS)
        st = self.ns_status(OTHER_NS)
        self.assertTrue(st is None and not os.path.exists(store_dir),
                        "a Hello refused for its generation created namespace %s: "
                        "Status lists it (%s), store dir %s %s"
                        % (OTHER_NS, str(st).replace("\n", " ") if st else "no", store_dir,
                           "exists" if os.path.exists(store_dir) else "absent"))
        self.push_one_item()

    def test_one_history(self):
        """A namespace has one history (Guarantee 9): the archiver binds it to
        the first site's node id; another node, a Hello whose chain differs
        at the same seq, or a frame whose chain before it differs, are
        refused FAILED_PRECONDITION and change nothing."""
        self.push_valid([[commit(create_file("ACC", "CUST"), time_ms=self.new_time()),
                          commit(write("ACC", "CUST", b"k", b"v"), time_ms=self.new_time())]])
        P = grpc.StatusCode
        applied = self.applied()
        msg = self.refused([self.hello(node_id="other-site", last_seq=applied + 5)],
                           P.FAILED_PRECONDITION, ["py-site", "other-site", "adopt"],
                           hello=False, case="another site's node id")
        self.assertIn("nothing applied", msg)
        self.refused([self.hello(chain=self.chain ^ 1)], P.FAILED_PRECONDITION,
                     ["history differs", "seq %d" % self.applied(), "adopt"], hello=False,
                     case="same seq, another chain")
        # a site whose retained journal begins at seq 2 with another history
        # before it (the chain before seq 2 is not this copy's)
        self.refused([self.hello(last_seq=self.applied() + 3, first_seq=2, first_chain=12345)],
                     P.FAILED_PRECONDITION, ["history differs", "seq 1"], hello=False,
                     case="retained journal after another history")
        s = self.applied() + 1
        ents = commit(write("ACC", "CUST", b"k", b"other"), time_ms=self.new_time())
        self.refused([self.entries(s, ents, prev_chain=self.chain ^ 1)], P.FAILED_PRECONDITION,
                     ["history differs", "seq %d" % (s - 1)],
                     case="a frame after another history")
        # each refusal was counted, and the good push after it cleared the count
        st = self.ns_status()
        self.assertEqual((st.refusals, st.refusal), (0, ""))

    def test_entries_refusals(self):
        self.push_valid([[commit(create_file("ACC", "CUST"), time_ms=self.new_time()),
                          commit(write("ACC", "CUST", b"k", b"v"),
                                 write("ACC", "CUST", b"k2", b"v2"), time_ms=self.new_time())]])
        P = grpc.StatusCode
        nxt = lambda: self.applied() + 1  # noqa: E731
        good = lambda: commit(write("ACC", "CUST", b"bad-frame", b"must not appear"),  # noqa
                              create_file("ACC", "NEWFILE"), time_ms=self.new_time())

        # Sequence: a gap, overlaps (the last commit again, and from seq 1),
        # and a valid frame followed by itself in the same call.
        self.refused([self.entries(nxt() + 1, good())], P.OUT_OF_RANGE, ["gap"], case="gap")
        self.refused([self.entries(nxt() + 1000000, good())], P.OUT_OF_RANGE, ["gap"],
                     case="far gap")
        self.refused([self.entries(nxt() - 1, good())], P.OUT_OF_RANGE, ["overlap"],
                     case="overlap by one")
        self.refused([self.entries(1, good())], P.OUT_OF_RANGE, ["overlap"],
                     case="overlap from seq 1")
        # A good frame then the same frame again: the first stays, the second is
        # refused and changes nothing (checked against the state after the first).
        applied = self.applied()
        call = self.open_push()
        call.send(self.hello(last_seq=applied + 1))
        self.expect_welcome(call, applied)
        once = commit(write("ACC", "CUST", b"once", b"1"), time_ms=self.new_time())
        again = self.entries(applied + 1, once)
        call.send(again)
        self.wait_durable(call, applied + 1)
        self.chain = fold_chain(self.chain, once)
        before = self.state()
        call.send(again)
        with self.assertRaises(grpc.RpcError) as cm:
            while call.recv() is not None:
                pass
        call.close()
        self.assertEqual(cm.exception.code(), P.OUT_OF_RANGE, cm.exception.details())
        self.assertIn("overlap", cm.exception.details())
        self.assertEqual(self.state(), before)
        self.push_one_item()

        # The block and its compression.
        self.refused([self.entries(nxt(), good(), compressed=b"\xff" * 40)], P.DATA_LOSS,
                     ["LZ4"], case="LZ4 garbage")
        self.refused([self.entries(nxt(), good(), compressed=b"")], P.DATA_LOSS, ["LZ4"],
                     case="empty LZ4 block")
        s = nxt()
        raw = block(s, good())
        truncated = lz4_raw(raw)[:-3]
        self.refused([self.entries(s, good(), compressed=truncated)], P.DATA_LOSS, ["LZ4"],
                     case="truncated LZ4 block")
        s = nxt()
        raw = block(s, good())
        self.refused([self.entries(s, good(), raw=raw, raw_len=len(raw) + 1)], P.DATA_LOSS,
                     ["LZ4", str(len(raw) + 1)], case="raw_len one over")
        self.refused([self.entries(s, good(), raw=raw, raw_len=len(raw) - 1)], P.DATA_LOSS,
                     ["LZ4", str(len(raw) - 1)], case="raw_len one under")
        flipped = bytearray(block(s, good()))
        flipped[-2] ^= 0x10
        self.refused([self.entries(s, good(), raw=bytes(flipped))], P.DATA_LOSS, ["checksum"],
                     case="block checksum flipped")
        flipped = bytearray(block(s, good()))
        flipped[20] ^= 0x01  # a byte of the first entry; the checksum no longer matches
        self.refused([self.entries(s, good(), raw=bytes(flipped))], P.DATA_LOSS, ["checksum"],
                     case="entry byte flipped")
        bad_magic = b"XSJB" + block(s, good())[4:-4]
        bad_magic += struct.pack("<I", xxhash.xxh32(bad_magic, seed=0).intdigest())
        self.refused([self.entries(s, good(), raw=bad_magic)], P.DATA_LOSS, ["magic"],
                     case="bad magic")
        self.refused([self.entries(s, good(), block_first_seq=s + 1)], P.DATA_LOSS,
                     ["block says"], case="block first_seq not the frame's")
        ents = good()
        self.refused([self.entries(s, ents, count=len(ents) - 1)], P.DATA_LOSS,
                     ["block says"], case="frame count not the block's")
        self.refused([self.entries(s, ents, count=len(ents) + 1, block_count=len(ents) + 1)],
                     P.DATA_LOSS, ["count"], case="count beyond the entries present")
        self.refused([self.entries(s, ents, count=0)], P.DATA_LOSS, ["count 0"],
                     case="count 0")
        self.refused([self.entries(s, ents, count=0, block_count=0)], P.DATA_LOSS,
                     ["count 0"], case="count 0 in frame and block")
        self.refused([self.entries(0, ents)], P.DATA_LOSS, ["seq 0"], case="first_seq 0")
        self.refused([self.entries((1 << 64) - 1, ents)], P.DATA_LOSS, ["overflows"],
                     case="first_seq + count past 2^64")
        self.refused([self.entries(s, ents, raw_len=US_FRAME_MAX_RAW_BYTES + 1)],
                     P.RESOURCE_EXHAUSTED, ["raw length %d" % (US_FRAME_MAX_RAW_BYTES + 1)],
                     case="raw_len over the limit")
        self.refused([self.entries(s, ents, raw_len=0xFFFFFFFF)], P.RESOURCE_EXHAUSTED,
                     ["raw length"], case="raw_len 2^32-1")

        # Entries that decode but are not whole or not valid.
        self.refused([self.entries(s, commit(write("ACC", "CUST", b"half", b"1"),
                                             write("ACC", "CUST", b"half2", b"2"), end=False))],
                     P.DATA_LOSS, ["inside a commit"], case="frame ends inside a commit")
        self.refused([self.entries(s, good() + commit(write("ACC", "CUST", b"half", b"1"),
                                                       end=False))],
                     P.DATA_LOSS, ["inside a commit"],
                     case="a whole commit then one that does not end")
        t = self.new_time()
        bad_section = [bytes([WRITE | END]) + varint(t) + lstr("ACC") + lstr("CUST") + b"\x02"
                       + lstr(b"x") + lstr(b"y")]
        self.refused([self.entries(s, bad_section)], P.DATA_LOSS, ["section"],
                     case="section 2")
        self.refused([self.entries(s, [bytes([0x0A | END]) + varint(t)])], P.DATA_LOSS,
                     ["op"], case="unknown op 10")
        trailing = [entry(write("ACC", "CUST", b"x", b"y"), t, True) + b"\x00"]
        self.refused([self.entries(s, trailing)], P.DATA_LOSS, ["trailing"],
                     case="trailing byte in an entry")
        long_id = [bytes([WRITE | END]) + varint(t) + lstr("ACC") + lstr("CUST") + b"\x00"
                   + varint(1 << 62) + b"x"]
        self.refused([self.entries(s, long_id)], P.DATA_LOSS, ["over the limit"],
                     case="id length 2^62")
        big = commit(write("ACC", "CUST", b"big", b"\0" * (US_BODY_MAX_BYTES + 1)),
                     time_ms=self.new_time())
        self.refused([self.entries(s, big)], P.DATA_LOSS,
                     ["body length %d over the limit" % (US_BODY_MAX_BYTES + 1)],
                     case="body over 16 MiB")
        # Names and ids: each in a commit whose earlier entries are valid, so
        # that a half-applied commit would show.
        for what, bad_op in (
                ("account name with a space",
                 create_file("BAD NAME", "F")),
                ("file name with a slash",
                 write("ACC", "CU/ST", b"x", b"y")),
                ("empty file name",
                 write("ACC", "", b"x", b"y")),
                ("empty account name",
                 create_file("", "F")),
                ("id with AM 0xFE",
                 write("ACC", "CUST", b"a\xfeb", b"y")),
                ("id with NUL",
                 write("ACC", "CUST", b"a\x00b", b"y")),
                ("empty id",
                 write("ACC", "CUST", b"", b"y")),
                ("delete of an id with 0xFF",
                 delete("ACC", "CUST", b"k\xff"))):
            ents = commit(create_file("ACC", "HALF"), write("ACC", "CUST", b"k", b"changed"),
                          bad_op, time_ms=self.new_time())
            self.refused([self.entries(nxt(), ents)], P.INVALID_ARGUMENT, ["bad"],
                         case="entry with %s" % what)

        # Entries the archiver refuses as a site would (files exist, none
        # created twice): refused whole, naming the seq; nothing is created.
        for what, bad_op, code, word in (
                ("write to a file never created", write("ACC", "NOFILE", b"x", b"y"),
                 P.NOT_FOUND, "ACC/NOFILE does not exist"),
                ("delete in a file never created", delete("ACC", "NOFILE", b"x"),
                 P.NOT_FOUND, "ACC/NOFILE does not exist"),
                ("clear of a file never created", clear_file("ACC", "NOFILE"),
                 P.NOT_FOUND, "ACC/NOFILE does not exist"),
                ("a file created twice", create_file("ACC", "CUST"),
                 P.ALREADY_EXISTS, "ACC/CUST already exists")):
            s = nxt()
            ents = commit(create_file("ACC", "HALF"), write("ACC", "CUST", b"k", b"changed"),
                          bad_op, time_ms=self.new_time())
            self.refused([self.entries(s, ents)], code, [word, "seq %d" % (s + 2)],
                         case=what)

        # Frames that are not frames.
        self.refused([b"\x0a\x05ab"], P.INVALID_ARGUMENT, ["does not decode"],
                     case="truncated protobuf")
        self.refused([b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"], P.INVALID_ARGUMENT,
                     ["does not decode"], case="protobuf garbage")
        self.refused([self.proto.Frame()], P.INVALID_ARGUMENT, ["no known body"],
                     case="Frame with no body")
        # Over the archiver's gRPC message limit: refused by gRPC itself.
        huge = self.proto.Frame(entries=self.proto.Entries(
            first_seq=nxt(), count=1, raw_len=100, block=b"\0" * US_RPC_OVER_MAX_BYTES))
        self.refused([huge], P.RESOURCE_EXHAUSTED, ["max"], case="message over the gRPC max")
        # A broken full copy is refused and never half-taken: the namespace keeps
        # its data (checked by refused() and below).
        begin = self.proto.Frame(seed_begin=self.proto.SeedBegin(seq=100, generation=1))
        not_a_save = self.proto.Frame(seed_data=self.proto.SeedData(data=b"hello, archiver" * 8))
        self.refused([begin, not_a_save], P.DATA_LOSS, ["full copy", "not a save"],
                     case="full copy whose bytes are not a save")
        self.refused([not_a_save], P.FAILED_PRECONDITION, ["without SeedBegin"],
                     case="full copy piece without SeedBegin")
        self.refused([self.proto.Frame(seed_end=self.proto.SeedEnd(seq=100, entries=1))],
                     P.FAILED_PRECONDITION, ["without SeedBegin"],
                     case="SeedEnd without SeedBegin")
        self.refused([begin, self.proto.Frame(seed_end=self.proto.SeedEnd(seq=100, entries=5))],
                     P.DATA_LOSS, ["before its save header"], case="SeedEnd with no save")
        self.refused([self.proto.Frame(seed_begin=self.proto.SeedBegin(seq=1, generation=1))],
                     P.FAILED_PRECONDITION, ["older"], case="full copy older than the archiver")
        self.refused([begin, self.proto.Frame(seed_chunk=self.proto.Entries(
            first_seq=1, count=1, raw_len=20, block=b"x"))], P.FAILED_PRECONDITION,
            ["protocol 2"], case="a protocol-2 seed chunk")
        # Still all there: the first data and every "after" item, nothing else.
        data = dump_namespace(self.stub, self.proto, NS)
        self.assertEqual(sorted(data), [("ACC", "CUST")])
        items = data[("ACC", "CUST")]["data"]
        self.assertEqual(items[b"k"], b"v")
        self.assertEqual(items[b"once"], b"1")
        self.assertNotIn(b"bad-frame", items)
        self.assertEqual(len(items), 3 + self.next_item)


if __name__ == "__main__":
    harness.main()
