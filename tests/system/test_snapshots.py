"""test_snapshots.py - snapshots on both daemons (issue 9, item 1).

  - A snapshot's reads never change while the site streams at full speed, and
    never show half a commit: a writer commits, at full speed, commits of
    four items (A and B set to the commit's number, a new x and y item);
    every snapshot, on the archiver and on the site, must be exactly the
    state after one commit: A == B == k, x1..xk and y1..yk, nothing else,
    and k is what its seq says. Read through Scan, ListFiles (python3-grpcio)
    and the CLI's get/list/files --at, once at once and once later.
  - Limits and errors: max_snapshots (RESOURCE_EXHAUSTED, exit 1), release,
    unknown and released ids (NOT_FOUND, exit 3), bad ids (usage, exit 2),
    status counting them; idle expiry after snapshot_ttl.
  - The services from python3-grpcio: OpenSnapshot, Read at it, Release.
  - A full copy replacing the archiver's copy under an open snapshot: reads at
    it are refused with FAILED_PRECONDITION (exit 1) saying so; a new
    snapshot reads the new copy.
"""

import threading

import harness
from harness import Proto, SystemTest, dump_namespace, wait_until

NS = "site-a"
ACC = "ACC"


class Writer:
    """One thread committing {A: k, B: k, xK, yK} as fast as it can."""

    def __init__(self, test, col):
        self.proto = test.proto
        self.stub = self.proto.stub(self.proto.channel(col.addr))
        self.stop = threading.Event()
        self.errors = []
        self.k = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def op(self, item, body):
        P = self.proto
        return P.Op(kind=P.Op.WRITE, account=ACC, file="PAIRS", id=item, body=body)

    def run(self):
        while not self.stop.is_set():
            k = self.k + 1
            v = b"%d" % k
            try:
                self.stub.Commit(self.proto.CommitRequest(namespace=NS, ops=[
                    self.op(b"A", v), self.op(b"B", v), self.op(b"x%07d" % k, v),
                    self.op(b"y%07d" % k, v)]), timeout=30)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
                return
            self.k = k

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)


def start_pairs(test):
    """An archiver and a site streaming to it, file ACC/PAIRS created and
    applied: (archiver, collector, the seq of the create-file)."""
    arch = test.start_archiver()
    col = test.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
    test.cli_ok("create-file", NS, ACC, "PAIRS", collector=col)
    base = test.last_seq(collector=col)
    wait_until(lambda: (test.archived_ns(arch, NS) or {}).get("applied_seq") == base, 30,
               "the archiver to apply the create-file")
    return arch, col, base


class SnapshotTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()

    def expected(self, k):
        v = lambda i: b"%d" % i
        data = {b"A": v(k), b"B": v(k)}
        for i in range(1, k + 1):
            data[b"x%07d" % i] = v(i)
            data[b"y%07d" % i] = v(i)
        return data

    def check_snapshot(self, d, snap, base_seq):
        """snap (the CLI's JSON) on daemon d: its state is exactly the one
        after the commit its seq names."""
        seq = snap["seq"]
        self.assertEqual((seq - base_seq) % 4, 0, "seq %d is inside a commit" % seq)
        k = (seq - base_seq) // 4
        stub = self.proto.stub(self.proto.channel(d.addr))
        dump = dump_namespace(stub, self.proto, NS, snapshot=snap["snapshot"])
        self.assertEqual(sorted(dump), [(ACC, "PAIRS")])
        data = dump[(ACC, "PAIRS")]["data"]
        self.assertEqual(data.get(b"A"), data.get(b"B"), "half a commit at seq %d" % seq)
        self.assertEqual(data, self.expected(k), "state at seq %d (k=%d)" % (seq, k))
        return k, dump

    def test_snapshot_reads_never_move_while_streaming(self):
        arch, col, base = start_pairs(self)
        taken = []
        with Writer(self, col) as w:
            for i in range(12):
                d = arch if i % 3 else col
                before = w.k
                wait_until(lambda: w.k > before + 5 or w.errors, 30, "commits to go on")
                snap = self.cli_json("snapshot", NS, collector=d)
                self.assertEqual(snap["namespace"], NS)
                self.assertEqual(snap["generation"], 1)
                self.assertGreater(snap["time_ms"], 0)
                k, dump = self.check_snapshot(d, snap, base)
                taken.append((d, snap, k, dump))
            # the site moved on well past every snapshot
            last_k = max(t[2] for t in taken)
            wait_until(lambda: w.k > last_k + 50 or w.errors, 30, "more commits")
            for d, snap, k, dump in taken:
                stub = self.proto.stub(self.proto.channel(d.addr))
                again = dump_namespace(stub, self.proto, NS, snapshot=snap["snapshot"])
                self.assertEqual(again, dump, "snapshot %d changed" % snap["snapshot"])
                # the CLI reads the same through --at
                sid = str(snap["snapshot"])
                self.assertEqual(self.cli_ok("get", NS, ACC, "PAIRS", "A", "--at", sid,
                                             collector=d), b"%d" % k)
                ids = self.list_ids(NS, ACC, "PAIRS", "--at", sid, collector=d)
                self.assertEqual(len(ids), 2 * k + 2)
                files = self.cli_json("files", NS, "--at", sid, collector=d)["files"]
                self.assertEqual([(f["file"], f["data_items"]) for f in files],
                                 [("PAIRS", 2 * k + 2)])
                # and latest reads do see the site's progress
                latest = self.cli_ok("get", NS, ACC, "PAIRS", "A", collector=col)
                self.assertGreater(int(latest), k)
        self.assertEqual(w.errors, [])
        self.assertGreater(len({t[2] for t in taken}), 6, "snapshots at distinct commits")
        st = self.archived_ns(arch, NS)
        self.assertEqual(st["snapshots"], 8)
        self.assertEqual(self.status(collector=col)["snapshots"], 4)
        for d, snap, _, _ in taken:
            self.cli_ok("release", NS, str(snap["snapshot"]), collector=d)
        self.assertEqual(self.archived_ns(arch, NS)["snapshots"], 0)
        self.assertEqual(self.status(collector=col)["snapshots"], 0)

    def test_limits_and_errors(self):
        col = self.start_collector(max_snapshots="2")
        c = lambda *a: self.cli(*a, collector=col)
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        self.cli_ok("put", NS, ACC, "F", "K", "v1", collector=col)
        one = self.cli_json("snapshot", NS, collector=col)
        two = self.cli_json("snapshot", NS, collector=col)
        self.assertEqual(one["seq"], two["seq"])
        self.assertEqual(one["ttl_ms"], 600000)
        self.assertNotEqual(one["snapshot"], two["snapshot"])
        # a third: RESOURCE_EXHAUSTED, exit 1, one line naming the setting
        rc, out, err = c("snapshot", NS)
        self.assertEqual((rc, out), (1, b""))
        self.assert_one_line(err, "third snapshot")
        self.assertIn(b"max_snapshots", err)
        # plain output: the id first, tab-separated
        self.cli_ok("release", NS, str(two["snapshot"]), collector=col)
        line = self.cli_ok("snapshot", NS, collector=col).decode()
        fields = line.rstrip("\n").split("\t")
        self.assertEqual(fields[1:3], ["seq=%d" % one["seq"], "generation=1"])
        three = int(fields[0])
        # released, unknown: NOT_FOUND, exit 3; nothing else changes
        rc, _, err = c("get", NS, ACC, "F", "K", "--at", str(two["snapshot"]))
        self.assertEqual(rc, 3)
        self.assertIn(b"released", err)
        rc, _, err = c("release", NS, str(two["snapshot"]))
        self.assertEqual(rc, 3)
        rc, _, err = c("list", NS, ACC, "F", "--at", "4242")
        self.assertEqual(rc, 3)
        self.assert_one_line(err, "unknown snapshot")
        # another namespace's id is not found either
        rc, _, err = c("get", "other-ns", ACC, "F", "K", "--at", str(one["snapshot"]))
        self.assertNotEqual(rc, 0)
        # bad ids: usage
        for bad in ("0", "-1", "x", "1.5"):
            rc, _, _ = c("get", NS, ACC, "F", "K", "--at", bad)
            self.assertEqual(rc, 2, bad)
            rc, _, _ = c("release", NS, bad)
            self.assertEqual(rc, 2, bad)
        self.assertEqual(self.status(collector=col)["snapshots"], 2)
        self.cli_ok("put", NS, ACC, "F", "K", "v2", collector=col)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "K", "--at", str(three),
                                     collector=col), b"v1")
        # the data itself was never touched by any of it
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "K", collector=col), b"v2")

    def test_idle_expiry(self):
        col = self.start_collector(snapshot_ttl="1s")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        snap = str(self.cli_json("snapshot", NS, collector=col)["snapshot"])
        # idle for snapshot_ttl, it ends by itself (and says so: an id never
        # opened would read "no snapshot", not "expired")
        wait_until(lambda: self.status(collector=col)["snapshots"] == 0, 15,
                   "an idle snapshot to expire")
        rc, _, err = self.cli("list", NS, ACC, "F", "--at", snap, collector=col)
        self.assertEqual(rc, 3)
        self.assert_one_line(err, "expired snapshot")
        self.assertIn(b"expired", err)

    def test_from_another_language(self):
        """OpenSnapshot, Read at it, ReleaseSnapshot through python3-grpcio."""
        import grpc
        col = self.start_collector(max_snapshots="1")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        self.cli_ok("put", NS, ACC, "F", "K", "v1", collector=col)
        P = self.proto
        stub = P.stub(P.channel(col.addr))
        snap = stub.OpenSnapshot(P.OpenSnapshotRequest(namespace=NS), timeout=10)
        self.assertEqual((snap.generation, snap.seq), (1, self.last_seq(collector=col)))
        self.assertEqual(snap.ttl_ms, 600000)
        self.cli_ok("put", NS, ACC, "F", "K", "v2", collector=col)
        read = lambda: stub.Read(P.ReadRequest(namespace=NS, account=ACC, file="F", id=b"K",
                                               snapshot=snap.snapshot), timeout=10)
        self.assertEqual(read().body, b"v1")
        with self.assertRaises(grpc.RpcError) as cm:
            stub.OpenSnapshot(P.OpenSnapshotRequest(namespace=NS), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        with self.assertRaises(grpc.RpcError) as cm:
            stub.OpenSnapshot(P.OpenSnapshotRequest(namespace="Bad/ns"), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        stub.ReleaseSnapshot(P.ReleaseSnapshotRequest(namespace=NS, snapshot=snap.snapshot),
                             timeout=10)
        with self.assertRaises(grpc.RpcError) as cm:
            read()
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as cm:
            stub.ReleaseSnapshot(P.ReleaseSnapshotRequest(namespace=NS, snapshot=snap.snapshot),
                                 timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_full_copy_under_an_open_snapshot(self):
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms",
                                   journal_retention="0s")
        c = lambda *a, **kw: self.cli_ok(*a, collector=col, **kw)
        c("create-file", NS, ACC, "F")
        c("put", NS, ACC, "F", "K", "old")
        seq = self.last_seq(collector=col)
        wait_until(lambda: (self.archived_ns(arch, NS) or {}).get("durable_seq") == seq, 30,
                   "the archiver to catch up")
        snap = self.cli_json("snapshot", NS, collector=arch)
        sid = str(snap["snapshot"])
        # The site goes on alone and trims its journal: the archiver can
        # only be brought up to date by a full copy.
        col.terminate()
        del col.config["archiver"]
        col.write_config()
        col.start()
        tsv = "".join("k%05d\tv%d\n" % (i, i) for i in range(2000)).encode()
        c("load", NS, ACC, "F", "--batch", "100", stdin=tsv)
        c("put", NS, ACC, "F", "K", "new")
        last = self.last_seq(collector=col)
        wait_until(lambda: self.status(collector=col)["journal_first_seq"] > seq + 1, 20,
                   "the site to trim its journal")
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "K", "--at", sid, collector=arch),
                         b"old")
        col.terminate()
        col.config["archiver"] = arch.addr
        col.write_config()
        col.start()
        wait_until(lambda: (self.archived_ns(arch, NS) or {}).get("applied_seq") == last, 60,
                   "the full copy to land")
        rc, out, err = self.cli("get", NS, ACC, "F", "K", "--at", sid, collector=arch)
        self.assertEqual((rc, out), (1, b""))
        self.assert_one_line(err, "read at a replaced snapshot")
        self.assertIn(b"replaced by a full copy", err)
        rc, _, err = self.cli("list", NS, ACC, "F", "--at", sid, collector=arch)
        self.assertEqual(rc, 1)
        self.assertIn(b"open a new snapshot", err)
        new = self.cli_json("snapshot", NS, collector=arch)
        self.assertEqual(new["seq"], last)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "K", "--at", str(new["snapshot"]),
                                     collector=arch), b"new")
        self.assertEqual(len(self.list_ids(NS, ACC, "F", "--at", str(new["snapshot"]),
                                           collector=arch)), 2001)


if __name__ == "__main__":
    harness.main()
