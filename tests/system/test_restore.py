"""test_restore.py - `understudy restore FILE --data-dir DIR` (issue 9: restore).

  - A site's save (logged and unlogged files, an account off, DICT items,
    empty bodies, every byte value, a body over a restore batch) restored
    into a new dir: a collector started on it holds every item, file and
    flag of the original (none stale), understudy-inspect calls it sound,
    and its next commit gets the next seq.
  - A save taken at the archiver, restored into a new archiver's data dir
    (DATA/ns/NS): the archiver serves the namespace at the save's seq, its
    items, and the copy is still bound to its site: that site streams on
    into it from the next seq.
  - A site rebuilt from its save has a new node id: the archiver refuses it
    as another site until `adopt`, then takes a full copy of it.
  - Truncated, bit-flipped (in a frame, in the trailer) and wrong-version
    saves, a non-empty DIR, a missing parent: exit 1, one line, nothing
    left (no DIR, no .restoring- sibling), a non-empty DIR untouched; a
    missing FILE exits 3, usage errors 2; SIGINT in the middle leaves
    nothing. Another namespace, a scoped save and stdin restore too.
"""

import json
import os
import signal
import struct
import subprocess

import harness
from harness import Proto, SystemTest, dump_namespace, run_cli, run_inspect, wait_until
from test_snapshots import ACC, NS, start_pairs

NO_SERVER = "127.0.0.1:1"   # restore is local: any address, never dialed


class RestoreTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()

    def restore(self, path, data_dir, *extra, stdin=None):
        args = ["restore", path] + (["--data-dir", data_dir] if data_dir else []) + list(extra)
        return run_cli(NO_SERVER, *args, stdin=stdin)

    def restore_json(self, path, data_dir, *extra):
        rc, out, err = self.restore(path, data_dir, "--json", *extra)
        self.assertEqual(rc, 0, "restore %s: %r" % (path, err))
        return json.loads(out)

    def contents(self, d):
        return dump_namespace(self.proto.stub(self.proto.channel(d.addr)), self.proto, NS)

    def leftovers(self, parent):
        return [n for n in os.listdir(parent) if ".restoring-" in n]

    def test_site_restore_continues_its_sequence(self):
        col = self.start_collector()
        c = lambda *a, **kw: self.cli_ok(*a, collector=col, **kw)
        c("create-file", NS, ACC, "F")
        c("create-file", NS, ACC, "LOCAL", "--unlogged")
        c("create-file", NS, ACC, "EMPTY")
        c("create-file", NS, "OTHER", "G")
        c("create-file", NS, "OTHER", "GU", "--unlogged")
        c("set-logging", NS, "OTHER", "off")
        every = bytes(range(256))
        c("put", NS, ACC, "F", "every", stdin=every)
        c("put", NS, ACC, "F", "empty", stdin=b"")
        c("put", NS, ACC, "F", b"id\\odd\x01\x7f", stdin=every[::-1])
        c("put", NS, ACC, "F", "d-every", "--dict", stdin=every)
        c("put", NS, ACC, "F", "d-empty", "--dict", stdin=b"")
        c("put", NS, ACC, "LOCAL", "l1", "local")
        c("put", NS, "OTHER", "G", "g1", "g")
        c("put", NS, "OTHER", "GU", "gu1", "gu")
        # more than a restore batch of entries, and more than its bytes
        c("load", NS, ACC, "F", stdin=b"".join(b"bulk%05d\tbody %d\n" % (i, i)
                                                  for i in range(2500)))
        c("put", NS, ACC, "LOCAL", "big", stdin=bytes(range(256)) * (9 * 4096))
        path = os.path.join(self.tmp, "site.save")
        saved = self.cli_json("save", NS, "-o", path, collector=col)
        want = self.contents(col)
        want_files = self.files(NS, collector=col)

        new = os.path.join(self.tmp, "restored-data")
        info = self.restore_json(path, new)
        self.assertEqual((info["namespace"], info["saved_namespace"], info["seq"],
                          info["generation"], info["items"], info["files"], info["data_dir"]),
                         (NS, NS, saved["seq"], saved["generation"], saved["items"],
                          saved["files"], new))
        self.assertEqual(self.leftovers(self.tmp), [])
        chk = run_inspect(new)
        self.assertTrue(chk["healthy"], chk)
        self.assertEqual((chk["position_seq"], chk["generation"], chk["entries"],
                          chk["first_seq"], chk["items"], chk["files"]),
                         (saved["seq"], saved["generation"], 0, 0, saved["items"], 5))

        col2 = self.start_collector(name="restored", data_dir=new)
        self.assertEqual(self.last_seq(collector=col2), saved["seq"])
        got = self.contents(col2)
        self.assertEqual(got, want)   # every item, flag, count; stale_since_seq 0
        self.assertEqual(got[(ACC, "F")]["data"][b"every"], every)
        self.assertFalse(got[(ACC, "LOCAL")]["logged"])
        self.assertFalse(got[("OTHER", "G")]["shipped"])
        self.assertEqual(self.files(NS, collector=col2), want_files)
        self.assertTrue(all(f["stale_since_seq"] == 0 for f in want_files.values()))
        # the sequence goes on, on both
        for d in (col2, col):
            r = self.cli_json("put", NS, ACC, "F", "after", "restore", collector=d)
            self.assertEqual(r["seq"], saved["seq"] + 1)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "after", collector=col2), b"restore")
        # restarted, the restored site is where it was
        col2.restart()
        self.assertEqual(self.last_seq(collector=col2), saved["seq"] + 1)
        chk = run_inspect(new)
        self.assertTrue(chk["healthy"], chk)
        self.assertEqual((chk["first_seq"], chk["last_seq"]), (saved["seq"] + 1,) * 2)

    def test_archiver_save_into_a_new_archiver(self):
        arch, col, base = start_pairs(self)
        c = lambda *a, **kw: self.cli_ok(*a, collector=col, **kw)
        for i in range(20):
            c("put", NS, ACC, "PAIRS", "k%02d" % i, "v%d" % i)
        c("put", NS, ACC, "PAIRS", "dict1", "dict body", "--dict")
        c("create-file", NS, ACC, "UNSHIPPED", "--unlogged")
        c("put", NS, ACC, "UNSHIPPED", "u", "site only")
        last = self.last_seq(collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] == last, 30,
                   "the archiver to apply seq %d" % last)
        path = os.path.join(self.tmp, "arch.save")
        saved = self.cli_json("save", NS, "-o", path, collector=arch)
        self.assertEqual(saved["seq"], last)
        want = self.contents(arch)
        self.assertNotIn((ACC, "UNSHIPPED"), want)

        data2 = os.path.join(self.tmp, "arch2-data")
        os.makedirs(os.path.join(data2, "ns"))
        info = self.restore_json(path, os.path.join(data2, "ns", NS))
        self.assertEqual((info["seq"], info["items"]), (last, 21))
        self.assertEqual(self.leftovers(os.path.join(data2, "ns")), [])
        arch2 = self.start_archiver(name="arch2", data_dir=data2)
        st = self.archived_ns(arch2, NS)
        self.assertEqual((st["applied_seq"], st["generation"]), (last, 1))
        self.assertEqual(self.contents(arch2), want)
        self.assertEqual(self.cli_ok("get", NS, ACC, "PAIRS", "k07", collector=arch2), b"v7")
        self.assertEqual(self.cli_ok("get", NS, ACC, "PAIRS", "dict1", "--dict",
                                     collector=arch2), b"dict body")
        # still bound to its site: the site streams on into it from last + 1
        col.config["archiver"] = arch2.addr
        col.write_config()
        col.restart()
        r = self.cli_json("put", NS, ACC, "PAIRS", "after", "restore", collector=col)
        self.assertEqual(r["seq"], last + 1)
        wait_until(lambda: self.archived_ns(arch2, NS)["applied_seq"] == last + 1, 30,
                   "the restored archiver to apply seq %d" % (last + 1))
        self.assertEqual(self.cli_ok("get", NS, ACC, "PAIRS", "after", collector=arch2),
                         b"restore")

    def test_restored_site_is_refused_until_adopted(self):
        arch, col, base = start_pairs(self)
        for i in range(10):
            self.cli_ok("put", NS, ACC, "PAIRS", "k%d" % i, "v%d" % i, collector=col)
        last = self.last_seq(collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] == last, 30,
                   "the archiver to apply seq %d" % last)
        path = os.path.join(self.tmp, "site.save")
        self.cli_ok("save", NS, "-o", path, collector=col)
        new = os.path.join(self.tmp, "rebuilt-data")
        info = self.restore_json(path, new)
        col.kill()   # the site is lost; it is rebuilt from its save
        rebuilt = self.start_collector(name="rebuilt", data_dir=new, archiver=arch.addr,
                                       heartbeat_interval="100ms")
        # a new node id: another site to the archiver, refused until adopted
        wait_until(lambda: self.archived_ns(arch, NS)["refusals"] >= 1, 30,
                   "the rebuilt site to be refused")
        refusal = self.archived_ns(arch, NS)["refusal"]
        self.assertIn(info["node_id"], refusal)
        self.assertIn(info["site"], refusal)
        self.assertIn("adopt", refusal)
        self.assertEqual(self.archived_ns(arch, NS)["applied_seq"], last)
        self.cli_ok("adopt", NS, collector=arch)
        # a new copy: a full copy at the save's seq (the rebuilt site's
        # journal begins after it), then the rebuilt site's commits
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] == last, 60,
                   "the adopted site's full copy at seq %d" % last)
        r = self.cli_json("put", NS, ACC, "PAIRS", "after", "restore", collector=rebuilt)
        self.assertEqual(r["seq"], last + 1)
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] == last + 1, 60,
                   "the adopted site's copy to reach seq %d" % (last + 1))
        self.assertEqual(self.contents(arch), self.contents(rebuilt))
        self.assertEqual(self.cli_ok("get", NS, ACC, "PAIRS", "after", collector=arch),
                         b"restore")

    def small_save(self):
        """A site with two files and a few items, its save: (collector, bytes)."""
        col = self.start_collector()
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        self.cli_ok("create-file", NS, "OTHER", "G", collector=col)
        for i in range(5):
            self.cli_ok("put", NS, ACC, "F", "k%d" % i, "v%d" % i, collector=col)
        self.cli_ok("put", NS, "OTHER", "G", "g", "g", collector=col)
        path = os.path.join(self.tmp, "small.save")
        self.cli_ok("save", NS, "-o", path, collector=col)
        with open(path, "rb") as f:
            return col, path, f.read()

    def test_refusals_leave_nothing(self):
        col, path, good = self.small_save()
        header_len = struct.unpack_from("<I", good, 6)[0]
        self.assertEqual(good[header_len:header_len + 1], b"F")
        comp_len = struct.unpack_from("<I", good, header_len + 5)[0]
        trailer = header_len + 9 + comp_len
        self.assertEqual(good[trailer:trailer + 1], b"T")   # one frame

        def flip(data, at):
            return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]
        cases = {"truncated": good[:-5],
                 "cut in a frame": good[:header_len + 9 + comp_len // 2],
                 "header cut": good[:20],
                 "bit flip in a frame": flip(good, header_len + 9 + comp_len // 2),
                 "bit flip in the trailer": flip(good, trailer + 1),
                 "bit flip in the checksum": flip(good, len(good) - 3),
                 "wrong version": good[:4] + b"\x02" + good[5:],
                 "trailing": good + b"x",
                 "not a save": b"hello world\n" * 10}
        for what, data in cases.items():
            p = os.path.join(self.tmp, what.replace(" ", "-") + ".save")
            with open(p, "wb") as f:
                f.write(data)
            new = os.path.join(self.tmp, "new-" + what.replace(" ", "-"))
            rc, out, err = self.restore(p, new)
            self.assertEqual(rc, 1, "%s: %r" % (what, err))
            self.assert_one_line(err, what)
            self.assertIn(b"offset", err, what)
            self.assertEqual(out, b"", what)
            self.assertFalse(os.path.exists(new), what)
            self.assertEqual(self.leftovers(self.tmp), [], what)
        # a non-empty DIR is refused and left as it was
        full = os.path.join(self.tmp, "full")
        os.makedirs(full)
        with open(os.path.join(full, "keep"), "wb") as f:
            f.write(b"mine")
        rc, _, err = self.restore(path, full)
        self.assertEqual(rc, 1)
        self.assert_one_line(err, "non-empty")
        self.assertEqual(os.listdir(full), ["keep"])
        rc, _, err = self.restore(path, os.path.join(full, "keep"))   # a file
        self.assertEqual(rc, 1)
        self.assert_one_line(err, "a file")
        # a parent that does not exist is not made
        rc, _, err = self.restore(path, os.path.join(self.tmp, "no", "such", "dir"))
        self.assertEqual(rc, 1)
        self.assert_one_line(err, "no parent")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "no")))
        # a missing FILE: 3; usage: 2
        new = os.path.join(self.tmp, "new")
        rc, _, err = self.restore(os.path.join(self.tmp, "absent.save"), new)
        self.assertEqual(rc, 3)
        self.assert_one_line(err, "absent")
        for args in (("restore", path), ("restore", path, "--data-dir"),
                     ("restore", "--data-dir", new),
                     ("restore", path, "--data-dir", new, "--namespace", "Bad/NS")):
            rc, _, err = run_cli(NO_SERVER, *args)
            self.assertEqual(rc, 2, args)
            self.assert_one_line(err, repr(args))
        self.assertFalse(os.path.exists(new))
        self.assertEqual(self.leftovers(self.tmp), [])
        # an empty DIR is taken; the good save, as another namespace
        os.makedirs(new)
        rc, out, err = self.restore(path, new, "--namespace", "site-b")
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, b"")
        self.assertEqual(out.decode().splitlines(), [
            "restored site-b (saved as site-a) at seq %d (generation 1): 6 items in 2 files "
            "into %s" % (self.last_seq(collector=col), new)])
        self.assertTrue(run_inspect(new)["healthy"])
        self.assertEqual(self.leftovers(self.tmp), [])

    def test_scoped_stdin_and_interrupted(self):
        col, path, good = self.small_save()
        # a scoped save: the store holds that account only, and says so
        scoped = os.path.join(self.tmp, "other.save")
        self.cli_ok("save", NS, "OTHER", "-o", scoped, collector=col)
        new = os.path.join(self.tmp, "scoped")
        rc, out, err = self.restore(scoped, new)
        self.assertEqual(rc, 0, err)
        self.assertIn(b"only account OTHER", out)
        col2 = self.start_collector(name="scoped", data_dir=new)
        self.assertEqual(list(self.contents(col2)), [("OTHER", "G")])
        col2.kill()
        # from stdin
        new = os.path.join(self.tmp, "from-stdin")
        info = json.loads(self.cli_ok("--json", "restore", "-", "--data-dir", new,
                                      addr=NO_SERVER, stdin=good))
        self.assertEqual(info["items"], 6)
        self.assertTrue(run_inspect(new)["healthy"])
        # SIGINT while it waits for the rest of the save: nothing left (the
        # reader reads 64 KiB at a time: the save is larger, and the header
        # and more than 64 KiB of it are sent)
        self.cli_ok("put", NS, ACC, "F", "noise", stdin=self.rng.randbytes(400000),
                    collector=col)
        big = os.path.join(self.tmp, "big.save")
        self.cli_ok("save", NS, "-o", big, collector=col)
        with open(big, "rb") as f:
            good = f.read()
        self.assertGreater(len(good), 300000)
        new = os.path.join(self.tmp, "interrupted")
        p = subprocess.Popen([harness.binary("understudy"), "restore", "-", "--data-dir", new],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=harness.child_env())
        try:
            p.stdin.write(good[:150000])
            p.stdin.flush()
            wait_until(lambda: self.leftovers(self.tmp), 30, "the restore to start building")
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 1, err)
        self.assert_one_line(err, "interrupted")
        self.assertIn(b"interrupted", err)
        self.assertFalse(os.path.exists(new))
        self.assertEqual(self.leftovers(self.tmp), [])


if __name__ == "__main__":
    harness.main()
