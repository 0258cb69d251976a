"""test_saves.py - saves and dump (issue 9, items 3 and 4, streamed saves).

  - A save taken while the site streams at full speed equals, item for item,
    the snapshot it was taken at (--at SNAP, on the archiver), and a save
    without --at is the state after one commit (never half of one).
  - A site's save holds every file with its own logged flag, DICT items and
    any byte in bodies; `dump` prints it with load's escapes, and what it
    prints goes back through `load` to the same bytes; --json too.
  - save_max_rate paces a save (it takes at least its size over the rate),
    streamed or kept in the archive; a daemon streams at most 4 saves at
    once and refuses a fifth with RESOURCE_EXHAUSTED; a save whose client
    was killed frees its place at once.
  - Scopes (an account, a file) hold exactly that; a scope that does not
    exist is NOT_FOUND (exit 3); usage errors exit 2; a failed save leaves no
    file behind; a truncated, bit-flipped or wrong-version save is refused by
    dump with exit 1 and one line naming the offset.
"""

import base64
import json
import os
import signal
import subprocess
import time

import harness
from harness import Proto, SystemTest, dump_namespace, run_cli, tsv_escape, wait_until
from test_snapshots import ACC, NS, Writer, start_pairs


def dump_lines(items):
    """{(account, file, is_dict, id): body} -> sorted dump text lines."""
    return sorted("%s\t%s%s\t%s\t%s" % (a, "DICT " if d else "", f, tsv_escape(i), tsv_escape(b))
                  for (a, f, d, i), b in items.items())


class SaveTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()

    def dump(self, path, *extra):
        rc, out, err = run_cli("127.0.0.1:1", "dump", path, *extra)
        return rc, out, err

    def dump_ok(self, path, *extra):
        rc, out, err = self.dump(path, *extra)
        self.assertEqual(rc, 0, "dump %s: %r" % (path, err))
        return out

    def snapshot_items(self, d, snap):
        stub = self.proto.stub(self.proto.channel(d.addr))
        items = {}
        for (a, f), v in dump_namespace(stub, self.proto, NS, snapshot=snap).items():
            for sec, is_dict in (("data", False), ("dict", True)):
                for i, b in v[sec].items():
                    items[(a, f, is_dict, i)] = b
        return items

    def test_save_while_streaming_equals_its_snapshot(self):
        arch, col, base = start_pairs(self)
        with Writer(self, col) as w:
            wait_until(lambda: w.k > 300 or w.errors, 60, "commits")
            snap = self.cli_json("snapshot", NS, collector=arch)
            path = os.path.join(self.tmp, "at-snap.save")
            info = self.cli_json("save", NS, "--at", str(snap["snapshot"]), "-o", path,
                                 collector=arch)
            self.assertEqual((info["seq"], info["generation"]), (snap["seq"], 1))
            # the same, from the site, without --at: one commit's state
            path2 = os.path.join(self.tmp, "site.save")
            info2 = self.cli_json("save", NS, "-o", path2, collector=col)
            before = w.k
            wait_until(lambda: w.k > before + 50 or w.errors, 30, "more commits")
        self.assertEqual(w.errors, [])
        want = self.snapshot_items(arch, snap["snapshot"])
        got = self.dump_ok(path).decode().splitlines()
        self.assertEqual(sorted(got), dump_lines(want))
        self.assertEqual(info["items"], len(want))
        self.assertEqual(info["bytes"], os.path.getsize(path))
        self.assertEqual(info["files"], 1)
        k = (snap["seq"] - base) // 4
        self.assertEqual(len(want), 2 * k + 2)
        # the site's save: A == B == k2, 2*k2 + 2 items, k2 from its seq
        self.assertEqual((info2["seq"] - base) % 4, 0)
        k2 = (info2["seq"] - base) // 4
        lines = self.dump_ok(path2).decode().splitlines()
        self.assertEqual(len(lines), 2 * k2 + 2)
        self.assertIn("%s\tPAIRS\tA\t%d" % (ACC, k2), lines)
        self.assertIn("%s\tPAIRS\tB\t%d" % (ACC, k2), lines)
        # nothing was left beside the saves
        self.assertEqual(sorted(n for n in os.listdir(self.tmp) if n.endswith(".save")
                                or ".partial-" in n), ["at-snap.save", "site.save"])

    def test_site_save_dump_and_load_back(self):
        col = self.start_collector()
        c = lambda *a, **kw: self.cli_ok(*a, collector=col, **kw)
        c("create-file", NS, ACC, "F")
        c("create-file", NS, ACC, "LOCAL", "--unlogged")
        c("create-file", NS, "OTHER", "G")
        c("set-logging", NS, "OTHER", "off")
        bodies = {b"plain": b"v", b"marks": b"a\xfeb\xfdc\xfcd", b"ctl": b"t\tn\nr\r\\\x00\x7f",
                  b"empty": b"", b"id\\with\x01odd": b"\xff" * 3}
        for i, b in bodies.items():
            c("put", NS, ACC, "F", i, stdin=b)
        c("put", NS, ACC, "F", "d1", "dict body", "--dict")
        c("put", NS, ACC, "LOCAL", "l1", "local")
        c("put", NS, "OTHER", "G", "g1", "g")
        path = os.path.join(self.tmp, "all.save")
        info = self.cli_json("save", NS, "-o", path, collector=col)
        self.assertEqual((info["items"], info["files"]), (len(bodies) + 3, 3))
        want = {(ACC, "F", False, i): b for i, b in bodies.items()}
        want[(ACC, "F", True, b"d1")] = b"dict body"
        want[(ACC, "LOCAL", False, b"l1")] = b"local"
        want[("OTHER", "G", False, b"g1")] = b"g"
        self.assertEqual(sorted(self.dump_ok(path).decode().splitlines()), dump_lines(want))
        objs = [json.loads(line) for line in self.dump_ok(path, "--json").splitlines()]
        self.assertEqual(len(objs), len(want))
        self.assertIn({"account": ACC, "file": "F", "dict": True, "id": "d1",
                       "body": "dict body"}, objs)
        # the same save through python3-grpcio: another language reads Admin.Save
        stub = self.proto.stub(self.proto.channel(col.addr))
        msgs = list(stub.Save(self.proto.SaveRequest(namespace=NS), timeout=60))
        self.assertTrue(msgs[-1].done)
        self.assertEqual(msgs[-1].seq, info["seq"])
        p4 = os.path.join(self.tmp, "python.save")
        with open(p4, "wb") as f:
            f.write(b"".join(m.data for m in msgs))
        self.assertEqual(os.path.getsize(p4), msgs[-1].bytes)
        self.assertEqual(self.dump_ok(p4), self.dump_ok(path))
        # dump's lines go back through load to the same bytes
        text = b"".join(line.split(b"\t", 2)[2] + b"\n"
                        for line in self.dump_ok(path).splitlines()
                        if line.startswith(b"ACC\tF\t"))
        c("create-file", NS, ACC, "F2")
        c("load", NS, ACC, "F2", stdin=text)
        for i, b in bodies.items():
            self.assertEqual(c("get", NS, ACC, "F2", i), b, i)
        # scopes: an account, a file
        p2 = os.path.join(self.tmp, "acc.save")
        self.cli_ok("save", NS, "OTHER", "-o", p2, collector=col)
        self.assertEqual(self.dump_ok(p2).decode().splitlines(), ["OTHER\tG\tg1\tg"])
        p3 = os.path.join(self.tmp, "file.save")
        self.cli_ok("save", NS, ACC, "LOCAL", "-o", p3, collector=col)
        self.assertEqual(self.dump_ok(p3).decode().splitlines(), ["ACC\tLOCAL\tl1\tlocal"])
        # -o -: the save on stdout, what it holds on stderr
        r = subprocess.run([harness.binary("understudy"), "--addr", col.addr, "save", NS,
                            ACC, "LOCAL", "-o", "-"], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(p3, "rb") as f:
            self.assertEqual(len(r.stdout), len(f.read()))
        self.assertIn(b"saved site-a", r.stderr)

    def test_refusals(self):
        col = self.start_collector()
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        self.cli_ok("put", NS, ACC, "F", "k", "v", collector=col)
        out = os.path.join(self.tmp, "x.save")
        for args, code in (((NS, "NOACC"), 3), ((NS, ACC, "NOFILE"), 3),
                           (("other-ns",), 1), (("Bad/NS",), 1),
                           ((NS, "--at", "777"), 3)):
            rc, _, err = self.cli("save", *args, "-o", out, collector=col)
            self.assertEqual(rc, code, (args, err))
            self.assert_one_line(err, "save %s" % (args,))
            self.assertFalse(os.path.exists(out))
        rc, _, _ = self.cli("save", NS, collector=col)
        self.assertEqual(rc, 2)
        rc, _, err = self.cli("save", NS, "-o", os.path.join(self.tmp, "no", "dir", "x"),
                              collector=col)
        self.assertEqual(rc, 1)
        self.assertEqual(os.listdir(self.tmp).count("no"), 0)
        self.assertEqual([n for n in os.listdir(self.tmp) if ".partial-" in n], [])
        # damaged saves: refused by dump, exit 1, one line naming the offset
        self.cli_ok("save", NS, "-o", out, collector=col)
        with open(out, "rb") as f:
            good = f.read()
        self.assertEqual(self.dump_ok(out), b"ACC\tF\tk\tv\n")
        cases = {"truncated": good[:-5], "header cut": good[:20],
                 "bit flip": good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0x10])
                 + good[len(good) // 2 + 1:],
                 "wrong version": good[:4] + b"\x09" + good[5:],
                 "trailing": good + b"x", "not a save": b"hello world\n" * 10}
        for what, data in cases.items():
            p = os.path.join(self.tmp, what.replace(" ", "-"))
            with open(p, "wb") as f:
                f.write(data)
            rc, stdout, err = self.dump(p)
            self.assertEqual(rc, 1, what)
            self.assert_one_line(err, what)
            self.assertIn(b"offset", err, what)
        rc, _, err = self.dump(os.path.join(self.tmp, "absent.save"))
        self.assertEqual(rc, 3)

    def load_incompressible(self, d, n, body_bytes):
        """n items of body_bytes that LZ4 cannot shrink much, in ACC/F."""
        self.cli_ok("create-file", NS, ACC, "F", collector=d)
        lines = b"".join(b"i%05d\t%s\n" % (i, base64.b64encode(os.urandom(body_bytes * 3 // 4)))
                         for i in range(n))
        self.cli_ok("load", NS, ACC, "F", stdin=lines, collector=d)

    def start_save(self, d, path):
        return subprocess.Popen([harness.binary("understudy"), "--addr", d.addr, "save", NS,
                                 "-o", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def test_pacing_and_the_limit_on_saves_running(self):
        rate = 128 * 1024
        col = self.start_collector(save_max_rate="128KiB")
        self.load_incompressible(col, 1000, 1000)
        t0 = time.monotonic()
        first = os.path.join(self.tmp, "paced.save")
        info = self.cli_json("save", NS, "-o", first, collector=col)
        took = time.monotonic() - t0
        self.assertEqual(info["items"], 1000)
        size = os.path.getsize(first)
        self.assertGreater(size, 900 * 1000)
        # paced: every message but the last (at most two 256 KiB chunks) waits
        # for the bytes before it; unpaced, this save takes a tenth of a second
        self.assertGreaterEqual(took, (size - 600 * 1024) / rate, "a save of %d bytes" % size)
        # four at once; the fifth is refused, and nothing is left of it
        paths = [os.path.join(self.tmp, "s%d.save" % i) for i in range(6)]
        running = [self.start_save(col, paths[i]) for i in range(4)]
        time.sleep(1.0)  # each takes at least 3 s
        rc, _, err = self.cli("save", NS, "-o", paths[4], collector=col)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "fifth save")
        self.assertIn(b"4 saves are running", err)
        self.assertFalse(os.path.exists(paths[4]))
        # a save whose client died frees its place: a new one starts while
        # the other three still run
        running[0].send_signal(signal.SIGKILL)
        running[0].wait()
        time.sleep(0.5)
        self.assertEqual([p.poll() for p in running[1:]], [None] * 3)
        late = self.start_save(col, paths[5])
        for p in running[1:] + [late]:
            _, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
        for path in paths[1:4] + paths[5:]:
            self.assertEqual(self.dump_ok(path), self.dump_ok(first), path)

    def test_archive_saves_are_paced(self):
        arch = self.start_archiver(save_max_rate="256KiB")
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        self.load_incompressible(col, 1000, 1000)
        last = self.last_seq(collector=col)
        wait_until(lambda: (self.archived_ns(arch, NS) or {}).get("applied_seq") == last, 30,
                   "the archiver to apply the load")
        t0 = time.monotonic()
        info = self.cli_json("save", NS, "--archive", collector=arch)
        took = time.monotonic() - t0
        self.assertEqual(info["items"], 1000)
        self.assertGreaterEqual(took, (info["bytes"] - 600 * 1024) / (256 * 1024))


if __name__ == "__main__":
    harness.main()
