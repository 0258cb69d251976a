"""test_rejoin.py - a fenced site rejoins its namespace's primary (issue 10,
rejoin).

  - A site commits while its archiver is down (async: within max_lag), so
    those commits never ship; it dies (kill -9); the archiver comes back and
    is promoted, and takes commits of its own, some to the same items, while
    another site streams to it all along.
  - The site comes back: fenced by its first Hello, it rejoins by itself:
    its own tail is in an export file (`understudy dump` shows each of its
    commits, deletes and file operations too), and nothing of it is in the
    rejoined store; the store equals the primary's, item for item and file
    for file; it follows the primary (Replication.Pull): later commits on
    the archiver reach it; it is a standby with no lag.
  - `understudy rejoin` again says it rejoined already and changes nothing;
    kill -9 of the following site, restarted: it follows on from where it
    was; kill -9 of the archiver: the site follows again once it is back.
  - kill -9 of the site at a few moments of its rejoin: restarted, it ends
    the same (one export, the same; nothing of the tail in its store).
  - A tail made by cutting the link with the fault proxy (the site alive
    and committing): exported exactly, on the archiver never, not in the
    rejoined store.
  - A site with rejoin = manual stays fenced until `understudy rejoin`.
  - Bad input: rejoin at a primary site, or naming another namespace: one
    line, nothing changed.
"""

import json
import os
import time

import harness
from harness import SystemTest, wait_until
from test_replication_faults import FaultProxy

NS, NS_B, ACC = "site-a", "site-b", "ACC"


class RejoinTest(SystemTest):

    def items(self, node, files):
        """{(file, id): body} of every item of files, read through the CLI."""
        out = {}
        for f in files:
            rc, ids, _ = self.cli("list", NS, ACC, f, collector=node)
            if rc == 3:
                continue  # no such file there
            self.assertEqual(rc, 0)
            for i in ids.split():
                out[(f, i)] = self.cli_ok("get", NS, ACC, f, i, collector=node)
        return out

    def files_text(self, node):
        return self.cli_ok("files", NS, collector=node)

    def diverge(self, **site_config):
        """A site with a divergent tail, dead; the archiver promoted with
        commits of its own. Returns (archiver, site, other site, fork seq)."""
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms",
                                   **site_config)
        colb = self.start_collector(archiver=arch.addr, namespace=NS_B,
                                    heartbeat_interval="100ms")
        self.cli_ok("create-file", NS_B, ACC, "B", collector=colb)
        for f in ("F", "G"):
            self.cli_ok("create-file", NS, ACC, f, collector=col)
        for i in range(10):
            self.cli_ok("put", NS, ACC, "F", "k%d" % i, "v%d" % i, collector=col)
            self.cli_ok("put", NS, ACC, "G", "g%d" % i, "w%d" % i, collector=col)
        shipped = self.last_seq(collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["durable_seq"] >= shipped, 30,
                   "the archiver to hold the shared history")
        # the archiver goes; the site commits on: never shipped
        arch.kill()
        self.cli_ok("put", NS, ACC, "F", "k1", "site's k1", collector=col)
        self.cli_ok("delete", NS, ACC, "F", "k2", collector=col)
        self.cli_ok("put", NS, ACC, "F", "site-new", "only here", collector=col)
        self.cli_ok("create-file", NS, ACC, "H", collector=col)
        self.cli_ok("put", NS, ACC, "H", "h1", "in a new file", collector=col)
        self.cli_ok("delete-file", NS, ACC, "G", collector=col)
        self.tail = self.last_seq(collector=col) - shipped
        col.kill()
        arch.start()
        p = self.cli_json("promote", NS, collector=arch)
        self.assertEqual(p["first_seq"], shipped + 1)
        # the primary's own commits, some to the same items
        self.cli_ok("put", NS, ACC, "F", "k1", "archiver's k1", collector=arch)
        self.cli_ok("put", NS, ACC, "F", "k3", "archiver's k3", collector=arch)
        self.cli_ok("put", NS, ACC, "G", "g1", "archiver's g1", collector=arch)
        self.cli_ok("create-file", NS, ACC, "J", collector=arch)
        self.cli_ok("put", NS, ACC, "J", "j1", "archiver's file", collector=arch)
        self.cli_ok("put", NS_B, ACC, "B", "b1", "other site", collector=colb)
        return arch, col, colb, shipped + 1

    def assert_same(self, arch, col):
        files = ("F", "G", "H", "J")
        self.assertEqual(self.items(col, files), self.items(arch, files))
        self.assertEqual(self.files_text(col), self.files_text(arch))

    def test_rejoin_by_itself_then_follow(self):
        arch, col, colb, fork = self.diverge()
        col.start()
        wait_until(lambda: self.status(collector=col)["role"] == "standby", 60,
                   "the site to rejoin and catch up")
        st = self.status(collector=col)
        self.assertEqual((st["primary"], st["generation"], st["last_seq"]),
                         (arch.addr, 2, self.archived_ns(arch, NS)["applied_seq"]))
        self.assertEqual(st["exported"], self.tail)
        self.assertTrue(os.path.isfile(st["export_path"]), st)
        # the export holds the site's own commits, in order, nothing else
        dump = [json.loads(l) for l in
                self.cli_ok("dump", "--json", st["export_path"]).splitlines()]
        self.assertEqual([(d["op"], d["file"], d.get("id")) for d in dump],
                         [("WRITE", "F", "k1"), ("DELETE", "F", "k2"),
                          ("WRITE", "F", "site-new"), ("CREATE-FILE", "H", None),
                          ("WRITE", "H", "h1"), ("DELETE-FILE", "G", None)])
        self.assertEqual([d["seq"] for d in dump], list(range(fork, fork + self.tail)))
        self.assertEqual(dump[0]["body"], "site's k1")
        text = self.cli_ok("dump", st["export_path"])
        self.assertIn(b"#DELETE\tACC\tF\tk2\n", text)
        self.assertIn(b"#DELETE-FILE\tACC\tG\n", text)
        # the rejoined store is the primary's: none of the tail is in it
        self.assert_same(arch, col)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "k1", collector=col), b"archiver's k1")
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "k2", collector=col), b"v2")
        rc, _, _ = self.cli("get", NS, ACC, "F", "site-new", collector=col)
        self.assertEqual(rc, 3)
        self.assertEqual(self.cli_ok("get", NS, ACC, "G", "g5", collector=col), b"w5")
        # it follows: the primary's next commits reach it
        self.cli_ok("put", NS, ACC, "F", "later", "followed", collector=arch)
        self.cli_ok("delete", NS, ACC, "J", "j1", collector=arch)
        wait_until(lambda: self.last_seq(collector=col) ==
                   self.archived_ns(arch, NS)["applied_seq"], 30, "the site to follow")
        self.assert_same(arch, col)
        st = self.status(collector=col)
        self.assertEqual((st["following"], st["lag_entries"]), (True, 0))
        a = self.archived_ns(arch, NS)
        wait_until(lambda: self.archived_ns(arch, NS)["site_durable_seq"] == a["applied_seq"],
                   30, "the archiver to see the site's durable ack")
        self.assertTrue(self.archived_ns(arch, NS)["site_following"])
        # a standby takes no commits
        rc, _, err = self.cli("put", NS, ACC, "F", "x", "y", collector=col)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"standby", err)
        # again: said, nothing changed
        again = self.cli_json("rejoin", collector=col)
        self.assertEqual((again["was_rejoined"], again["role"]), (True, "standby"))
        # kill -9 of the site, then of the archiver: it follows on each time
        col.restart()
        self.cli_ok("put", NS, ACC, "F", "after-site-kill", "1", collector=arch)
        wait_until(lambda: self.last_seq(collector=col) ==
                   self.archived_ns(arch, NS)["applied_seq"], 30, "the site to follow again")
        arch.restart()
        self.cli_ok("put", NS, ACC, "F", "after-archiver-kill", "2", collector=arch)
        wait_until(lambda: self.last_seq(collector=col) ==
                   self.archived_ns(arch, NS)["applied_seq"], 30,
                   "the site to follow the restarted archiver")
        self.assert_same(arch, col)
        self.assertEqual(self.status(collector=col)["role"], "standby")
        # the other site streamed all along
        self.assertEqual(self.archived_ns(arch, NS_B)["role"], "standby")
        self.assertEqual(self.cli_ok("get", NS_B, ACC, "B", "b1", collector=arch), b"other site")

    def test_manual_rejoin_and_bad_input(self):
        arch, col, colb, fork = self.diverge(rejoin="manual")
        col.start()
        wait_until(lambda: self.status(collector=col)["role"] == "fenced", 30,
                   "the site to be fenced")
        st = self.status(collector=col)
        self.assertEqual((st["fork_seq"], st["divergent_entries"]), (fork, self.tail))
        # bad input: another namespace; the other site is a primary
        rc, _, err = self.cli("rejoin", NS_B, collector=col)
        self.assertEqual(rc, 3, err)
        self.assert_one_line(err, "rejoin of another namespace")
        rc, _, err = self.cli("rejoin", collector=colb)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "rejoin at a primary")
        self.assertIn(b"primary", err)
        self.assertEqual(self.status(collector=col)["role"], "fenced")
        r = self.cli_json("rejoin", collector=col)
        self.assertFalse(r["was_rejoined"])
        self.assertEqual((r["primary"], r["generation"], r["fork_seq"], r["exported"]),
                         (arch.addr, 2, fork, self.tail))
        self.assertTrue(os.path.isfile(r["export_path"]))
        self.assertGreater(r["keys"], 0)
        wait_until(lambda: self.status(collector=col)["role"] == "standby", 30,
                   "the site to catch up")
        self.assert_same(arch, col)

    def test_kill_9_during_the_rejoin(self):
        """The site killed -9 at a few moments of its rejoin (export, rewind,
        catching up), then restarted: it ends a standby equal to the
        primary, with the same export (the tail written again the same, or
        kept), and nothing of the tail in its store."""
        arch, col, colb, fork = self.diverge()
        exports = set()
        for delay_s in (0.0, 0.005, 0.02, 0.08):
            col.start(wait=False)
            time.sleep(delay_s)
            col.kill()
        col.start()
        wait_until(lambda: self.status(collector=col)["role"] == "standby", 60,
                   "the site to rejoin after the kills")
        st = self.status(collector=col)
        dump = [json.loads(l) for l in
                self.cli_ok("dump", "--json", st["export_path"]).splitlines()]
        self.assertEqual(len(dump), self.tail)
        self.assertEqual([d["seq"] for d in dump], list(range(fork, fork + self.tail)))
        self.assert_same(arch, col)
        rc, _, _ = self.cli("get", NS, ACC, "F", "site-new", collector=col)
        self.assertEqual(rc, 3)
        exports = [f for f in os.listdir(os.path.dirname(st["export_path"]))]
        self.assertEqual(exports, [os.path.basename(st["export_path"])])  # no partial left

    def test_a_tail_cut_off_by_the_fault_proxy(self):
        """The link cut with the fault proxy (block) while the site, alive,
        goes on committing; the archiver is promoted meanwhile. When the
        link comes back the site is fenced and rejoins by itself: each
        commit it acknowledged is on the archiver (shipped before the cut)
        or in the export, never both, never lost; none of the tail is in
        the rejoined store."""
        arch = self.start_archiver()
        proxy = FaultProxy(self.tmp, "proxy", arch.addr, "--mode", "pass")
        try:
            col = self.start_collector(archiver=proxy.addr, heartbeat_interval="100ms")
            self.cli_ok("create-file", NS, ACC, "F", collector=col)
            for i in range(20):
                self.cli_ok("put", NS, ACC, "F", "a%02d" % i, "shipped", collector=col)
            wait_until(lambda: self.archived_ns(arch, NS)["durable_seq"] == 21, 30,
                       "the archiver to hold the shared history")
            proxy.ok("block")
            tail = ["t%02d" % i for i in range(30)]
            for t in tail:
                self.cli_ok("put", NS, ACC, "F", t, "cut off", collector=col)
            self.cli_ok("put", NS, ACC, "F", "a05", "rewritten, cut off", collector=col)
            wait_until(lambda: not self.archived_ns(arch, NS)["connected"], 30,
                       "the archiver to see the site gone")
            self.cli_ok("promote", NS, collector=arch)
            self.cli_ok("put", NS, ACC, "F", "b00", "the archiver's", collector=arch)
            proxy.ok("unblock")
            wait_until(lambda: self.status(collector=col)["role"] == "standby", 60,
                       "the site to be fenced, rejoin and catch up")
            st = self.status(collector=col)
            dump = [json.loads(l) for l in
                    self.cli_ok("dump", "--json", st["export_path"]).splitlines()]
            self.assertEqual([d["id"] for d in dump], tail + ["a05"])
            self.assertEqual([d["seq"] for d in dump], list(range(22, 22 + len(tail) + 1)))
            on_arch = set(self.list_ids(NS, ACC, "F", collector=arch))
            self.assertEqual(on_arch, {b"a%02d" % i for i in range(20)} | {b"b00"})
            self.assertEqual(set(self.list_ids(NS, ACC, "F", collector=col)), on_arch)
            self.assertEqual(self.cli_ok("get", NS, ACC, "F", "a05", collector=col), b"shipped")
            self.assertEqual(self.cli_ok("get", NS, ACC, "F", "b00", collector=col),
                             b"the archiver's")
        finally:
            proxy.kill()


if __name__ == "__main__":
    harness.main()
