"""test_switchover.py - the whole cycle: promote, rejoin, switchover (issue 10).

  - A site loading item by item (python3-grpcio) is killed -9 and the
    archiver promoted; a client given both addresses then commits item by
    item the whole time: at the archiver; across the site's return, its
    rejoin by itself and its following; across `understudy switchover NS`,
    which hands the role back: the site is primary at generation 3, the
    archiver its standby, the site streams to it again. Every commit
    acknowledged anywhere is on both sides exactly once, or (the dead
    site's, never shipped) in the export file; both sides are equal;
    another site streams all along.
  - Switchover again says so and changes nothing; the archiver refuses
    commits as a standby; a kill -9 of the archiver then of the site after
    the switchover: the site stays primary and the stream resumes.
  - A site that does not keep up (stopped with SIGSTOP) makes a switchover
    give up after --wait: the archiver stays primary and takes commits.
  - The handover written but never heard (the site stopped, then both
    sides killed -9): restarted, the site hears it again at its next pull
    and takes over, nothing lost.
  - A site whose store was lost (its data dir removed) is built again with
    `understudy rebuild NS --data-dir DIR` against the promoted archiver: it
    follows, and takes the role back by switchover.
  - kill -9 of the archiver while a switchover holds its commits (nothing
    written yet): primary again at its generation, and the switchover runs
    again; at moments of the site's rejoin: the site retries by itself.
  - Bad input: switchover of a standby namespace with no promote, of an
    unknown namespace, against a collector; a bad --wait: one line.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import harness
from harness import Proto, SystemTest, wait_until

NS, NS_B, ACC = "site-a", "site-b", "ACC"


class SwitchoverTest(SystemTest):

    def follow(self, arch, col):
        wait_until(lambda: self.status(collector=col)["role"] == "standby" and
                   self.last_seq(collector=col) == self.archived_ns(arch, NS)["applied_seq"],
                   60, "the site to rejoin and catch up")

    def ids(self, node):
        return self.list_ids(NS, ACC, "F", collector=node)

    def test_the_whole_cycle_under_load(self):
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        colb = self.start_collector(archiver=arch.addr, namespace=NS_B,
                                    heartbeat_interval="100ms")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        self.cli_ok("create-file", NS_B, ACC, "B", collector=colb)
        both = "%s,%s" % (col.addr, arch.addr)
        # a site loading item by item (python3-grpcio, one commit each) is
        # killed -9: what it acknowledged is on the archiver or, never
        # shipped, in the export its rejoin writes
        proto = Proto()
        stub = proto.stub(proto.channel(col.addr))
        acked, stop = [], threading.Event()

        def site_load():
            i = 0
            while not stop.is_set():
                op = proto.Op(kind=proto.Op.WRITE, account=ACC, file="F", id=b"s%05d" % i,
                              body=b"site")
                try:
                    stub.Commit(proto.CommitRequest(namespace=NS, ops=[op]), timeout=10)
                except Exception:
                    return
                acked.append(b"s%05d" % i)
                i += 1

        loader = threading.Thread(target=site_load)
        loader.start()
        wait_until(lambda: len(acked) > 200, 60, "the site's load to begin")
        col.kill()
        stop.set()
        loader.join()
        self.cli_ok("promote", NS, collector=arch)
        # from here one client with both addresses commits the whole time
        n = 3000
        feed = subprocess.Popen(
            [harness.binary("understudy"), "--addr", both, "load", NS, ACC, "F", "--batch", "1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=harness.child_env())
        sent = 0

        def send(k):
            nonlocal sent
            feed.stdin.write(b"".join(b"i%05d\tv%d\n" % (i, i) for i in range(sent, sent + k)))
            feed.stdin.flush()
            sent += k

        send(500)
        wait_until(lambda: len(self.ids(arch)) > len(acked) // 2 + 300, 60,
                   "the load to go on at the archiver")
        col.start()  # it rejoins by itself and follows
        self.follow(arch, col)
        exported = set()
        st = self.status(collector=col)
        if st["export_path"]:
            exported = {json.loads(l)["id"].encode() for l in
                        self.cli_ok("dump", "--json", st["export_path"]).splitlines()}
        send(1000)
        time.sleep(0.3)
        sw = self.cli_json("switchover", NS, collector=arch)
        self.assertFalse(sw["was_switched"])
        self.assertEqual((sw["generation"], sw["site_addr"]), (3, col.addr))
        send(n - sent)
        feed.stdin.close()
        feed.wait(timeout=300)
        err = feed.stderr.read()
        feed.stdout.close()
        feed.stderr.close()
        self.assertEqual(feed.returncode, 0, err)
        # roles: the site primary at 3, the archiver its standby, streaming
        st = self.status(collector=col)
        self.assertEqual((st["role"], st["generation"]), ("primary", 3))
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] ==
                   self.last_seq(collector=col), 60, "the site to stream to the archiver")
        a = self.archived_ns(arch, NS)
        self.assertEqual((a["role"], a["generation"], a["connected"]), ("standby", 3, True))
        # every acknowledged commit is there, once, on both, or (the dead
        # site's, never shipped) in the export; both sides are equal
        on_site, on_arch = self.ids(col), self.ids(arch)
        self.assertEqual(on_site, on_arch)
        self.assertEqual(len(on_site), len(set(on_site)))
        loaded = [b"i%05d" % i for i in range(n)]
        self.assertEqual([i for i in on_site if i.startswith(b"i")], loaded)
        site_items = {i for i in on_site if i.startswith(b"s")}
        self.assertEqual(set(acked) - site_items - exported, set())
        self.assertEqual(site_items & exported, set())
        for i in (0, 499, 500, 1499, 1500, n - 1):
            self.assertEqual(self.cli_ok("get", NS, ACC, "F", "i%05d" % i, collector=arch),
                             b"v%d" % i)
        # again: said, nothing changed
        again = self.cli_json("switchover", NS, collector=arch)
        self.assertEqual((again["was_switched"], again["generation"], again["first_seq"]),
                         (True, 3, sw["first_seq"]))
        rc, _, err = self.cli("put", NS, ACC, "F", "x", "y", collector=arch)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"standby", err)
        # kill -9 of each side: the site stays primary, the stream resumes
        arch.restart()
        col.restart()
        self.cli_ok("put", NS, ACC, "F", "after", "restarts", addr=both)
        self.assertEqual(self.status(collector=col)["role"], "primary")
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] ==
                   self.last_seq(collector=col), 60, "the stream to resume")
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "after", collector=arch), b"restarts")
        # the other site was never touched
        self.cli_ok("put", NS_B, ACC, "B", "b", "1", collector=colb)
        wait_until(lambda: self.archived_ns(arch, NS_B)["applied_seq"] ==
                   self.last_seq(collector=colb), 30, "the other site")
        self.assertEqual(self.archived_ns(arch, NS_B)["generation"], 1)

    def test_a_site_that_does_not_keep_up_and_bad_input(self):
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        self.cli_ok("put", NS, ACC, "F", "k", "v", collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] == 2, 30, "the copy")
        # a standby namespace: nothing to switch over
        rc, _, err = self.cli("switchover", NS, collector=arch)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "switchover of a standby")
        self.assertIn(b"nothing to switch over", err)
        col.kill()
        self.cli_ok("promote", NS, collector=arch)
        # no site follows yet
        rc, _, err = self.cli("switchover", NS, collector=arch)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"no site follows it", err)
        self.assertEqual(self.archived_ns(arch, NS)["role"], "primary")
        col.start()
        self.follow(arch, col)
        # the site stops answering: the switchover gives up, nothing changed
        col.signal(signal.SIGSTOP)
        try:
            self.cli_ok("put", NS, ACC, "F", "k2", "v2", collector=arch)
            t0 = time.monotonic()
            rc, _, err = self.cli("switchover", NS, "--wait", "1s", collector=arch)
            self.assertEqual(rc, 1, err)
            self.assert_one_line(err, "an abandoned switchover")
            self.assertIn(b"abandoned", err)
            self.assertGreaterEqual(time.monotonic() - t0, 0.9)
            a = self.archived_ns(arch, NS)
            self.assertEqual((a["role"], a["generation"]), ("primary", 2))
            self.cli_ok("put", NS, ACC, "F", "k3", "taken again", collector=arch)
        finally:
            col.signal(signal.SIGCONT)
        self.follow(arch, col)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "k3", collector=col), b"taken again")
        # bad input: one line, nothing changed
        for args, code in ((("switchover", "no-such"), 3), (("switchover", "Bad/Name"), 1),
                           (("switchover", NS, "--wait", "soon"), 2)):
            rc, _, err = self.cli(*args, collector=arch)
            self.assertEqual(rc, code, (args, err))
            self.assert_one_line(err, " ".join(args))
        rc, _, err = self.cli("switchover", NS, collector=col)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "switchover against a collector")
        self.assertEqual(self.archived_ns(arch, NS)["role"], "primary")

    def test_a_crash_after_the_handover_was_written(self):
        """The role is handed over (written on the archiver) but the site
        never hears it: stopped (SIGSTOP) while the switchover runs, then
        killed -9, the archiver killed -9 too. Restarted, the site pulls at
        exactly the handover's position, hears the Handover again and takes
        over; nothing is lost and both sides agree."""
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        for i in range(10):
            self.cli_ok("put", NS, ACC, "F", "k%d" % i, "v%d" % i, collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] == 11, 30, "the copy")
        col.kill()
        self.cli_ok("promote", NS, collector=arch)
        self.cli_ok("put", NS, ACC, "F", "a", "archiver's", collector=arch)
        col.start()
        self.follow(arch, col)
        col.signal(signal.SIGSTOP)  # it has everything: the switchover goes through
        try:
            sw = self.cli_json("switchover", NS, collector=arch)
            self.assertEqual((sw["generation"], sw["first_seq"]), (3, 13))
            a = self.archived_ns(arch, NS)
            self.assertEqual((a["role"], a["generation"]), ("standby", 3))
        finally:
            col.kill()  # never ran the Handover it was sent
        arch.restart()
        a = self.archived_ns(arch, NS)
        self.assertEqual((a["role"], a["generation"], a["applied_seq"]), ("standby", 3, 12))
        # no primary meanwhile: the archiver refuses commits as a standby
        rc, _, err = self.cli("put", NS, ACC, "F", "x", "y", collector=arch)
        self.assertEqual(rc, 1, err)
        col.start()
        wait_until(lambda: self.status(collector=col)["role"] == "primary", 30,
                   "the site to hear the handover again and take over")
        st = self.status(collector=col)
        self.assertEqual((st["generation"], st["last_seq"]), (3, 12))
        both = "%s,%s" % (col.addr, arch.addr)
        self.cli_ok("put", NS, ACC, "F", "b", "the site's again", addr=both)
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] == 13, 30,
                   "the site to stream to the archiver")
        for node in (col, arch):
            self.assertEqual(self.cli_ok("get", NS, ACC, "F", "a", collector=node), b"archiver's")
            self.assertEqual(self.cli_ok("get", NS, ACC, "F", "b", collector=node),
                             b"the site's again")
            self.assertEqual(len(self.ids(node)), 12)

    def test_a_site_rebuilt_after_its_store_was_lost(self):
        """The site dies with its disk (its data dir removed); the archiver
        is promoted and takes commits. `understudy rebuild NS --data-dir DIR`
        against the archiver builds the site's store again from a full copy,
        as the site following that primary: its collector started on DIR
        catches up, follows, and takes the role back by switchover. Bad
        input changes nothing."""
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        for i in range(10):
            self.cli_ok("put", NS, ACC, "F", "k%d" % i, "v%d" % i, collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["durable_seq"] == 11, 30, "the copy")
        col.kill()
        shutil.rmtree(col.data_dir)
        # not primary yet: refused, nothing made
        rc, _, err = self.cli("rebuild", NS, "--data-dir", col.data_dir, collector=arch)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "rebuild of a standby namespace")
        self.assertFalse(os.path.exists(col.data_dir))
        self.cli_ok("promote", NS, collector=arch)
        self.cli_ok("put", NS, ACC, "F", "a", "the archiver's", collector=arch)
        for args, code in ((("rebuild", "no-such", "--data-dir", col.data_dir), 3),
                           (("rebuild", NS), 2)):
            rc, _, err = self.cli(*args, collector=arch)
            self.assertEqual(rc, code, (args, err))
            self.assert_one_line(err, " ".join(args))
        self.assertFalse(os.path.exists(col.data_dir))
        out = self.cli_ok("rebuild", NS, "--data-dir", col.data_dir, collector=arch)
        self.assertIn(b"following its primary", out)
        col.start()
        wait_until(lambda: self.status(collector=col)["role"] == "standby" and
                   self.last_seq(collector=col) == self.archived_ns(arch, NS)["applied_seq"],
                   60, "the rebuilt site to follow")
        self.assertEqual(self.ids(col), self.ids(arch))
        self.cli_ok("put", NS, ACC, "F", "b", "followed", collector=arch)
        self.follow(arch, col)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "b", collector=col), b"followed")
        sw = self.cli_json("switchover", NS, collector=arch)
        self.assertEqual((sw["generation"], sw["site_addr"]), (3, col.addr))
        both = "%s,%s" % (col.addr, arch.addr)
        self.cli_ok("put", NS, ACC, "F", "c", "the site's again", addr=both)
        self.assertEqual(self.status(collector=col)["role"], "primary")
        wait_until(lambda: self.archived_ns(arch, NS)["applied_seq"] ==
                   self.last_seq(collector=col), 30, "the site to stream to the archiver")
        self.assertEqual(self.ids(col), self.ids(arch))
        # into a directory that holds something, against a collector: refused
        rc, _, err = self.cli("rebuild", NS, "--data-dir", col.data_dir, collector=arch)
        self.assertEqual(rc, 1, err)
        rc, _, err = self.cli("rebuild", NS, "--data-dir", os.path.join(self.tmp, "x"),
                              collector=col)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"not an archiver", err)

    def test_kill_9_of_the_archiver_during_a_switchover_and_a_rejoin(self):
        """The archiver killed -9 while a switchover waits for the site (its
        commits held, nothing written yet): it comes back the primary at its
        generation and takes commits; the switchover then runs again. And
        killed -9 at a few moments of the site's rejoin: the site's rejoin
        fails, retries by itself, and ends a standby equal to the primary."""
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        for i in range(10):
            self.cli_ok("put", NS, ACC, "F", "k%d" % i, "v%d" % i, collector=col)
        wait_until(lambda: self.archived_ns(arch, NS)["durable_seq"] == 11, 30, "the copy")
        col.kill()
        self.cli_ok("promote", NS, collector=arch)
        # the archiver dies at moments of the site's rejoin
        for delay_s in (0.0, 0.01, 0.05):
            self.cli_ok("put", NS, ACC, "F", "r%s" % delay_s, "x", collector=arch)
            col.start(wait=False)
            time.sleep(delay_s)
            arch.kill()
            col.kill()
            arch.start()
        col.start()
        self.follow(arch, col)
        self.assertEqual(self.ids(col), self.ids(arch))
        # the switchover waits for a stopped site: the archiver dies meanwhile
        col.signal(signal.SIGSTOP)
        try:
            self.cli_ok("put", NS, ACC, "F", "held", "before the switchover", collector=arch)
            sw = subprocess.Popen([harness.binary("understudy"), "--addr", arch.addr,
                                   "switchover", NS, "--wait", "20s"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=harness.child_env())
            wait_until(lambda: b"switchover_holding" in open(arch.log_path, "rb").read(), 30,
                       "the switchover to hold the commits")
            arch.kill()
            _, err = sw.communicate(timeout=60)
            self.assertNotEqual(sw.returncode, 0, err)
            arch.start()
            a = self.archived_ns(arch, NS)
            self.assertEqual((a["role"], a["generation"]), ("primary", 2))
            self.cli_ok("put", NS, ACC, "F", "after", "the archiver's still", collector=arch)
        finally:
            col.signal(signal.SIGCONT)
        self.follow(arch, col)
        sw = self.cli_json("switchover", NS, collector=arch)
        self.assertEqual(sw["generation"], 3)
        wait_until(lambda: self.status(collector=col)["role"] == "primary", 30, "the handover")
        self.assertEqual(self.ids(col), self.ids(arch))
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "after", collector=col),
                         b"the archiver's still")


if __name__ == "__main__":
    harness.main()
