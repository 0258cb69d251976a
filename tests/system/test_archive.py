"""test_archive.py - the archiver's on-line archive (issue 9, item 3).

  - `save --archive` keeps a save under save_dir; `saves NS` lists it (seq,
    scope, items, bytes, checksum); the kept file dumps to exactly the
    snapshot it was taken at; keep_saves prunes the oldest whole saves and
    leaves scoped ones; a scope that does not exist is NOT_FOUND and leaves
    nothing; a collector refuses --archive.
  - save_every takes saves by itself and keep_saves keeps exactly N.
  - A restart keeps the list; what a crash left (a partial save, a meta
    without its save) is removed at start and never listed.
"""

import os

import harness
from harness import SystemTest, run_cli, tsv_escape, wait_until

NS = "site-a"


class ArchiveTest(SystemTest):

    def saves(self, arch):
        return self.cli_json("saves", NS, collector=arch)["saves"]

    def dump_lines(self, path):
        rc, out, err = run_cli("127.0.0.1:1", "dump", path)
        self.assertEqual(rc, 0, err)
        return out.decode().splitlines()

    def setup_pair(self, **arch_config):
        arch = self.start_archiver(**arch_config)
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        self.cli_ok("create-file", NS, "ACC", "F", collector=col)
        self.cli_ok("create-file", NS, "ACC", "G", collector=col)
        return arch, col

    def caught_up(self, arch, col):
        seq = self.last_seq(collector=col)
        wait_until(lambda: (self.archived_ns(arch, NS) or {}).get("durable_seq") == seq, 30,
                   "the archiver to catch up")
        return seq

    def test_kept_listed_pruned(self):
        arch, col = self.setup_pair(keep_saves="2")
        kept = []
        for i in range(3):
            self.cli_ok("put", NS, "ACC", "F", "k%d" % i, b"v\xfe%d" % i, collector=col)
            seq = self.caught_up(arch, col)
            snap = self.cli_json("snapshot", NS, collector=arch)
            self.assertEqual(snap["seq"], seq)
            k = self.cli_json("save", NS, "--archive", "--at", str(snap["snapshot"]),
                              collector=arch)
            self.assertEqual((k["seq"], k["items"], k["files"]), (seq, i + 1, 2))
            self.assertTrue(k["path"].startswith(os.path.join(arch.data_dir, "saves", NS)))
            self.assertEqual(os.path.getsize(k["path"]), k["bytes"])
            want = ["ACC\tF\tk%d\t%s" % (j, tsv_escape(b"v\xfe%d" % j)) for j in range(i + 1)]
            self.assertEqual(sorted(self.dump_lines(k["path"])), want)
            kept.append(k)
        # a scoped save: listed, never pruned by keep_saves
        self.cli_ok("put", NS, "ACC", "G", "g", "g", collector=col)
        self.caught_up(arch, col)
        scoped = self.cli_json("save", NS, "ACC", "G", "--archive", collector=arch)
        self.assertEqual(self.dump_lines(scoped["path"]), ["ACC\tG\tg\tg"])
        listed = self.saves(arch)
        self.assertEqual([(s["seq"], s["account"], s["file"]) for s in listed],
                         [(kept[1]["seq"], "", ""), (kept[2]["seq"], "", ""),
                          (scoped["seq"], "ACC", "G")])
        for s, k in zip(listed, kept[1:]):
            self.assertEqual((s["path"], s["items"], s["bytes"], s["xxh64"]),
                             (k["path"], k["items"], k["bytes"], k["xxh64"]))
        self.assertFalse(os.path.exists(kept[0]["path"]))
        # the plain listing: one line a save, seq and scope in it
        text = self.cli_ok("saves", NS, collector=arch).decode().splitlines()
        self.assertEqual(len(text), 3)
        self.assertIn("scope=ACC/G", text[2])
        # refusals change nothing
        rc, _, err = self.cli("save", NS, "NOACC", "--archive", collector=arch)
        self.assertEqual(rc, 3)
        self.assert_one_line(err, "absent scope")
        rc, _, err = self.cli("save", NS, "--archive", collector=col)
        self.assertEqual(rc, 1)
        self.assertIn(b"archiver", err)
        rc, _, _ = self.cli("save", NS, "--archive", "-o", "x", collector=arch)
        self.assertEqual(rc, 2)
        rc, _, _ = self.cli("saves", "no-such-ns", collector=arch)
        self.assertEqual(rc, 0)  # a namespace with no saves lists none
        self.assertEqual(self.saves(arch), listed)
        # a restart keeps the list; what a crash left is cleaned, never listed
        arch.terminate()
        d = os.path.dirname(listed[0]["path"])
        with open(os.path.join(d, ".partial-20991231T000000.000Z-g1-s9.save"), "wb") as f:
            f.write(b"half")
        with open(os.path.join(d, "20991231T000000.000Z-g1-s9.meta"), "w") as f:
            f.write('{"save": "20991231T000000.000Z-g1-s9.save"}')
        arch.start()
        self.assertEqual(self.saves(arch), listed)
        self.assertEqual(sorted(n for n in os.listdir(d) if "2099" in n), [])

    def test_save_every_keeps_exactly_n(self):
        arch, col = self.setup_pair(save_every="1s", keep_saves="3")
        n = 0
        first = None
        deadline_names = set()

        def three_and_moved():
            s = self.saves(arch)
            names = [x["name"] for x in s]
            deadline_names.update(names)
            return len(s) == 3 and first is not None and first not in names

        # commits go on meanwhile; saves come by themselves
        wait_until(lambda: len(self.saves(arch)) >= 1, 30, "a first scheduled save")
        first = self.saves(arch)[0]["name"]
        while not three_and_moved():
            self.cli_ok("put", NS, "ACC", "F", "k%d" % n, "v", collector=col)
            n += 1
            wait_until(lambda: True, 1, "")
            if n > 400:
                self.fail("the oldest save was never pruned: %s" % sorted(deadline_names))
        self.assertGreater(len(deadline_names), 3)
        for s in self.saves(arch):
            self.assertEqual(s["account"], "")
            self.assertEqual(len(self.dump_lines(s["path"])), s["items"])

    def test_journal_kept_back_to_the_oldest_save(self):
        arch, col = self.setup_pair(journal_retention="0s", keep_saves="1")
        body = "x" * 1000
        tsv = lambda tag: "".join("%s%05d\t%s\n" % (tag, i, body) for i in range(3000)).encode()
        self.cli_ok("load", NS, "ACC", "F", "--batch", "100", stdin=tsv("a"), collector=col)
        s1 = self.caught_up(arch, col)
        first = self.cli_json("save", NS, "--archive", collector=arch)
        self.assertEqual(first["seq"], s1)
        self.cli_ok("load", NS, "ACC", "F", "--batch", "100", stdin=tsv("b"), collector=col)
        s2 = self.caught_up(arch, col)

        def reach():
            n = self.archived_ns(arch, NS)
            return n["journal_first_seq"], n["oldest_save_seq"], n["saves"]
        # trimmed (whole blocks), never past the oldest save
        wait_until(lambda: reach()[1] == s1 and reach()[0] > 1, 30,
                   "the journal before the save to be trimmed")
        j, oldest, saves = reach()
        self.assertLessEqual(j, s1 + 1)
        self.assertEqual(saves, 1)
        # a newer save, the old one pruned: the journal follows
        second = self.cli_json("save", NS, "--archive", collector=arch)
        self.assertEqual(second["seq"], s2)
        wait_until(lambda: reach()[1] == s2 and reach()[0] > s1, 30,
                   "the journal to follow the oldest save")
        self.assertLessEqual(reach()[0], s2 + 1)
        self.assertEqual(reach()[2], 1)
        self.assertEqual(self.archived_ns(arch, NS)["save_bytes"], second["bytes"])
        # nothing of the copy itself went: every item is there
        self.assertEqual(len(self.cli_ok("list", NS, "ACC", "F", collector=arch).splitlines()),
                         6000)

    def test_journal_kept_for_journal_retention(self):
        arch, col = self.setup_pair(keep_saves="1")
        tsv = "".join("a%05d\t%s\n" % (i, "x" * 1000) for i in range(2000)).encode()
        self.cli_ok("load", NS, "ACC", "F", "--batch", "100", stdin=tsv, collector=col)
        self.caught_up(arch, col)
        k = self.cli_json("save", NS, "--archive", collector=arch)
        wait_until(lambda: self.archived_ns(arch, NS)["oldest_save_seq"] == k["seq"], 30,
                   "the archive's figures")
        # within the default 168h: all of it stays
        self.assertEqual(self.archived_ns(arch, NS)["journal_first_seq"], 1)


if __name__ == "__main__":
    harness.main()
