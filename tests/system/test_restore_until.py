"""test_restore_until.py - restore rolled forward with the archived journal
(issue 9, item 6: `restore FILE --data-dir DIR --until SEQ|TIME
--journal-from ADDR`).

A site commits pairs (A = B = k, and new items xK, yK, one commit each) into
an archiver; the test records, as it goes, the seq and commit time of every
commit. From a save the archiver kept at some commit:
  - --until SEQ of a later commit gives exactly the state the site had then
    (a collector started on it holds it, at that seq, and commits on);
  - --until TIME gives the state of the last commit at or before TIME;
  - --until a seq inside a commit, past the journal's end, or before the
    save; a journal trimmed past the save; --until without --journal-from:
    refused, one line, nothing left.
"""

import os

import harness
from harness import Proto, SystemTest, dump_namespace, run_cli, wait_until
from test_snapshots import ACC, NS, start_pairs

NO_SERVER = "127.0.0.1:1"


class RestoreUntilTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()

    def commit(self, col, k):
        v = "%d" % k
        P = self.proto
        stub = P.stub(P.channel(col.addr))
        op = lambda i: P.Op(kind=P.Op.WRITE, account=ACC, file="PAIRS", id=i, body=v.encode())
        r = stub.Commit(P.CommitRequest(namespace=NS, ops=[
            op(b"A"), op(b"B"), op(b"x%04d" % k), op(b"y%04d" % k)]), timeout=30)
        return r.last_seq

    def expected(self, k):
        data = {b"A": b"%d" % k, b"B": b"%d" % k} if k else {}
        for i in range(1, k + 1):
            data[b"x%04d" % i] = b"%d" % i
            data[b"y%04d" % i] = b"%d" % i
        return data

    def restore(self, *args):
        return run_cli(NO_SERVER, "restore", *args)

    def holds(self, data_dir, name):
        col = self.start_collector(name=name, data_dir=data_dir)
        dump = dump_namespace(self.proto.stub(self.proto.channel(col.addr)), self.proto, NS)
        return col, dump[(ACC, "PAIRS")]["data"]

    def test_until_seq_and_time(self):
        arch, col, base = start_pairs(self)
        seqs = {0: base}
        for k in range(1, 11):
            seqs[k] = self.commit(col, k)
        wait_until(lambda: self.archived_ns(arch, NS)["durable_seq"] == seqs[10], 30,
                   "the archiver to catch up")
        kept = self.cli_json("save", NS, "--archive", collector=arch)
        self.assertEqual(kept["seq"], seqs[10])
        times = {}
        for k in range(11, 41):
            seqs[k] = self.commit(col, k)
            if k in (25, 33):
                snap = self.cli_json("snapshot", NS, collector=col)
                self.assertEqual(snap["seq"], seqs[k])
                times[k] = snap["time"]
                self.cli_ok("release", NS, str(snap["snapshot"]), collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["durable_seq"] == seqs[40], 30,
                   "the archiver to catch up")
        # --until SEQ: exactly the state after that commit
        d1 = os.path.join(self.tmp, "at-seq")
        rc, out, err = self.restore(kept["path"], "--data-dir", d1, "--until", str(seqs[20]),
                                    "--journal-from", arch.addr)
        self.assertEqual(rc, 0, err)
        self.assertIn(b"seq %d" % seqs[20], out)
        c1, data = self.holds(d1, "r1")
        self.assertEqual(data, self.expected(20))
        self.assertEqual(self.last_seq(collector=c1), seqs[20])
        r = self.cli_json("put", NS, ACC, "PAIRS", "after", "x", collector=c1)
        self.assertEqual(r["seq"], seqs[20] + 1)
        # --until TIME: the last commit at or before it
        d2 = os.path.join(self.tmp, "at-time")
        rc, out, err = self.restore(kept["path"], "--data-dir", d2, "--until", times[25],
                                    "--journal-from", arch.addr)
        self.assertEqual(rc, 0, err)
        c2, data = self.holds(d2, "r2")
        self.assertEqual(data, self.expected(25))
        # the whole retained journal: the last commit
        d3 = os.path.join(self.tmp, "to-end")
        rc, _, err = self.restore(kept["path"], "--data-dir", d3, "--until", str(seqs[40]),
                                  "--journal-from", arch.addr)
        self.assertEqual(rc, 0, err)
        _, data = self.holds(d3, "r3")
        self.assertEqual(data, self.expected(40))
        # from the site's own journal too
        d4 = os.path.join(self.tmp, "from-site")
        rc, _, err = self.restore(kept["path"], "--data-dir", d4, "--until", str(seqs[33]),
                                  "--journal-from", col.addr)
        self.assertEqual(rc, 0, err)
        _, data = self.holds(d4, "r4")
        self.assertEqual(data, self.expected(33))

        # refusals: one line, exit 1 (2 for usage), nothing left
        def refused(code, *extra, what=""):
            d = os.path.join(self.tmp, "refused")
            rc, out, err = self.restore(kept["path"], "--data-dir", d, *extra)
            self.assertEqual(rc, code, "%s: %r" % (what, err))
            self.assert_one_line(err, what)
            self.assertFalse(os.path.exists(d), what)
            self.assertEqual([n for n in os.listdir(self.tmp) if ".restoring-" in n], [], what)
            return err
        err = refused(1, "--until", str(seqs[20] - 2), "--journal-from", arch.addr,
                      what="inside a commit")
        self.assertIn(b"inside a commit", err)
        err = refused(1, "--until", str(seqs[40] + 5), "--journal-from", arch.addr,
                      what="past the end")
        self.assertIn(b"reaches only seq %d" % seqs[40], err)
        err = refused(1, "--until", str(seqs[5]), "--journal-from", arch.addr,
                      what="before the save")
        self.assertIn(b"past it already", err)
        refused(2, "--until", str(seqs[20]), what="no --journal-from")
        refused(2, "--journal-from", arch.addr, what="no --until")
        refused(2, "--until", "yesterday", "--journal-from", arch.addr, what="bad time")
        err = refused(1, "--until", str(seqs[20]), "--journal-from", "127.0.0.1:1",
                      what="nobody there")

    def test_journal_trimmed_past_the_save(self):
        arch, col, base = start_pairs(self)
        arch.config.update({"journal_retention": "0s", "keep_saves": "1"})
        arch.write_config()
        arch.restart()
        big = "z" * 2000
        self.cli_ok("load", NS, ACC, "PAIRS", "--batch", "100",
                    stdin="".join("big%05d\t%s\n" % (i, big) for i in range(2000)).encode(),
                    collector=col)
        s1 = self.last_seq(collector=col)
        wait_until(lambda: (self.archived_ns(arch, NS) or {}).get("durable_seq") == s1, 30,
                   "the archiver to catch up")
        old = self.cli_json("save", NS, "--archive", collector=arch)
        aside = os.path.join(self.tmp, "old.save")
        os.link(old["path"], aside)
        self.cli_ok("load", NS, ACC, "PAIRS", "--batch", "100",
                    stdin="".join("more%05d\t%s\n" % (i, big) for i in range(2000)).encode(),
                    collector=col)
        s2 = self.last_seq(collector=col)
        wait_until(lambda: (self.archived_ns(arch, NS) or {}).get("durable_seq") == s2, 30,
                   "the archiver to catch up")
        self.cli_json("save", NS, "--archive", collector=arch)
        wait_until(lambda: self.archived_ns(arch, NS)["journal_first_seq"] > s1 + 1, 30,
                   "the journal to be trimmed past the old save")
        d = os.path.join(self.tmp, "trimmed")
        rc, _, err = self.restore(aside, "--data-dir", d, "--until", str(s2), "--journal-from",
                                  arch.addr)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "trimmed")
        self.assertIn(b"does not reach back", err)
        self.assertFalse(os.path.exists(d))


if __name__ == "__main__":
    harness.main()
