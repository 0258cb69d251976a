"""test_failover.py - taking over a dead site's role (issue 10, promote).

  - A site is killed -9; `understudy promote NS` on the archiver makes its
    copy the namespace's primary there: generation + 1, kept across an
    archiver restart; commits go to the archiver through the Store service
    (the CLI's put, and python3-grpcio's Commit), every commit the site had
    acknowledged before it died is there, and another site streaming to the
    same archiver meanwhile is untouched.
  - Promote is idempotent: a second one says so and changes nothing.
  - While the site is connected and streaming, promote is refused (exit 1,
    one line) and changes nothing; --force promotes and fences the site:
    its stream is ended and its Hello refused from then on, naming the new
    generation; the site learns it (a Fenced message), goes to role fenced,
    kept across a kill -9, and refuses commits naming the primary's address.
  - A client given both addresses (--addr SITE,ARCHIVER) commits at the
    site, gets a clear error while there is no primary (reads still work,
    from the archiver), commits at the archiver once it is promoted and
    after the old site came back fenced; --prefer standby takes a report's
    snapshot on the archiver.
  - One client loading item by item through both addresses across a
    forced promote ends well: the commits the fenced site refuses go to the
    archiver; every item is on the archiver or, committed by the site before
    it heard it was fenced, on the site alone.
  - The archiver killed -9 while a promote runs comes back either a standby
    at generation 1 or primary at generation 2, never between; promote
    again is primary at 2 from the same seq; nothing is lost.
  - Bad input: an unknown namespace (exit 3), a bad name, promote against a
    collector, adopt of a promoted namespace: one line, nothing changed.
"""

import os
import subprocess
import time

import harness
from harness import Proto, SystemTest, wait_until

NS, NS_B, ACC = "site-a", "site-b", "ACC"


class FailoverTest(SystemTest):

    def start_pair(self):
        # these tests look at the fenced site: it rejoins only when told
        # (test_rejoin.py has the rejoin itself)
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms",
                                   rejoin="manual")
        self.cli_ok("create-file", NS, ACC, "F", collector=col)
        return arch, col

    def wait_applied(self, arch, ns, seq):
        wait_until(lambda: (self.archived_ns(arch, ns) or {}).get("applied_seq", 0) >= seq, 30,
                   "the archiver to apply %s up to seq %d" % (ns, seq))

    def test_promote_a_dead_site_then_restart(self):
        arch, col = self.start_pair()
        colb = self.start_collector(archiver=arch.addr, namespace=NS_B,
                                    heartbeat_interval="100ms")
        self.cli_ok("create-file", NS_B, ACC, "G", collector=colb)
        for i in range(20):
            self.cli_ok("put", NS, ACC, "F", "k%d" % i, "v%d" % i, collector=col)
        acked = self.last_seq(collector=col)
        self.wait_applied(arch, NS, acked)
        col.kill()
        wait_until(lambda: not self.archived_ns(arch, NS)["connected"], 30,
                   "the archiver to see the site gone")
        before = self.archived_ns(arch, NS)
        self.assertEqual((before["role"], before["generation"]), ("standby", 1))
        # a standby takes no commits
        rc, _, err = self.cli("put", NS, ACC, "F", "early", "x", collector=arch)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"standby", err)
        p = self.cli_json("promote", NS, collector=arch)
        self.assertEqual(p, {"namespace": NS, "generation": 2, "first_seq": acked + 1,
                             "was_primary": False, "fenced_site": False})
        st = self.archived_ns(arch, NS)
        self.assertEqual((st["role"], st["generation"], st["applied_seq"]),
                         ("primary", 2, acked))
        # commits here, from the CLI and from python3-grpcio
        self.cli_ok("put", NS, ACC, "F", "after", "on the archiver", collector=arch)
        proto = Proto()
        stub = proto.stub(proto.channel(arch.addr))
        op = proto.Op(kind=proto.Op.WRITE, account=ACC, file="F", id=b"py", body=b"grpcio")
        stub.Commit(proto.CommitRequest(namespace=NS, ops=[op]), timeout=30)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "py", collector=arch), b"grpcio")
        for i in range(20):
            self.assertEqual(self.cli_ok("get", NS, ACC, "F", "k%d" % i, collector=arch),
                             b"v%d" % i)
        self.assertEqual(self.archived_ns(arch, NS)["applied_seq"], acked + 2)
        # the other site streamed all along, untouched
        for i in range(5):
            self.cli_ok("put", NS_B, ACC, "G", "b%d" % i, "w", collector=colb)
        self.wait_applied(arch, NS_B, self.last_seq(collector=colb))
        self.assertEqual(self.archived_ns(arch, NS_B)["role"], "standby")
        self.assertEqual(self.archived_ns(arch, NS_B)["generation"], 1)
        # again: said, nothing changed
        again = self.cli_json("promote", NS, collector=arch)
        self.assertEqual(again, {"namespace": NS, "generation": 2, "first_seq": acked + 1,
                                 "was_primary": True, "fenced_site": False})
        out = self.cli_ok("promote", NS, collector=arch)
        self.assertIn(b"primary here already", out)
        self.assertEqual(self.archived_ns(arch, NS)["applied_seq"], acked + 2)
        # the role and the generation outlive a kill -9 of the archiver
        arch.restart()
        st = self.archived_ns(arch, NS)
        self.assertEqual((st["role"], st["generation"], st["applied_seq"], st["durable_seq"]),
                         ("primary", 2, acked + 2, acked + 2))
        self.cli_ok("put", NS, ACC, "F", "after-restart", "1", collector=arch)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "after", collector=arch),
                         b"on the archiver")
        # a primary's copy is not replaced by adopt
        rc, _, err = self.cli("adopt", NS, collector=arch)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"primary here", err)
        # the old site comes back at generation 1: fenced, never merged
        col.start()
        wait_until(lambda: "fenced" in (self.archived_ns(arch, NS).get("refusal") or ""), 30,
                   "the site's Hello to be refused as fenced")
        st = self.archived_ns(arch, NS)
        self.assertIn("generation 2", st["refusal"])
        self.assertEqual(st["applied_seq"], acked + 3)
        self.assertFalse(st["connected"])
        wait_until(lambda: self.status(collector=col)["role"] == "fenced", 30,
                   "the restarted site to fence itself")
        rc, _, err = self.cli("put", NS, ACC, "F", "late", "x", collector=col)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"fenced", err)
        # another node with this namespace is refused, and not fenced: only
        # the site the role was taken from is
        stranger = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        wait_until(lambda: "takes no stream from node" in
                   (self.archived_ns(arch, NS).get("refusal") or ""), 30,
                   "the stranger's Hello to be refused")
        self.assertEqual(self.status(collector=stranger)["role"], "primary")
        self.cli_ok("create-file", NS, ACC, "S", collector=stranger)
        self.assertEqual(self.archived_ns(arch, NS)["applied_seq"], acked + 3)

    def test_promote_refused_while_connected_then_forced(self):
        arch, col = self.start_pair()
        self.cli_ok("put", NS, ACC, "F", "k", "v", collector=col)
        seq = self.last_seq(collector=col)
        self.wait_applied(arch, NS, seq)
        rc, _, err = self.cli("promote", NS, collector=arch)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "promote while connected")
        self.assertIn(b"connected and streaming", err)
        st = self.archived_ns(arch, NS)
        self.assertEqual((st["role"], st["generation"], st["connected"]), ("standby", 1, True))
        # the site streams on as before
        self.cli_ok("put", NS, ACC, "F", "k2", "v2", collector=col)
        seq = self.last_seq(collector=col)
        self.wait_applied(arch, NS, seq)
        p = self.cli_json("promote", NS, "--force", collector=arch)
        self.assertEqual((p["generation"], p["first_seq"], p["fenced_site"]), (2, seq + 1, True))
        wait_until(lambda: "fenced" in (self.archived_ns(arch, NS).get("refusal") or ""), 30,
                   "the site's next Hello to be refused as fenced")
        # the site learns it: fenced, it refuses commits naming the primary
        wait_until(lambda: self.status(collector=col)["role"] == "fenced", 30,
                   "the site to fence itself")
        rc, _, err = self.cli("put", NS, ACC, "F", "site-only", "x", collector=col)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "a commit at a fenced site")
        self.assertIn(b"fenced", err)
        self.assertIn(arch.addr.encode(), err)
        self.assertIn(b"generation 2", err)
        self.assertEqual(self.last_seq(collector=col), seq)
        # the archiver takes its own
        self.cli_ok("put", NS, ACC, "F", "arch-only", "y", collector=arch)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "k2", collector=arch), b"v2")
        self.assertEqual(self.archived_ns(arch, NS)["applied_seq"], seq + 1)
        # fenced it stays, restarted (kill -9) while the archiver is down too
        arch.kill()
        col.restart()
        st = self.status(collector=col)
        self.assertEqual((st["role"], st["primary"], st["primary_generation"], st["fork_seq"],
                          st["divergent_entries"]), ("fenced", arch.addr, 2, seq + 1, 0))
        rc, _, err = self.cli("put", NS, ACC, "F", "site-only", "x", collector=col)
        self.assertEqual(rc, 1, err)
        self.assertIn(arch.addr.encode(), err)
        self.assertEqual(self.last_seq(collector=col), seq)

    def test_a_client_given_both_addresses_follows_the_primary(self):
        arch, col = self.start_pair()
        both = "%s,%s" % (col.addr, arch.addr)
        c = lambda *a, **kw: self.cli_ok(*a, addr=both, **kw)
        c("put", NS, ACC, "F", "k1", "at the site")
        self.assertEqual(self.last_seq(collector=col), 2)  # went to the site
        self.assertEqual(c("get", NS, ACC, "F", "k1"), b"at the site")
        self.wait_applied(arch, NS, 2)
        # --prefer standby: a report's snapshot is taken on the archiver
        snap = self.cli_json("snapshot", NS, "--prefer", "standby", addr=both)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "k1", "--at", str(snap["snapshot"]),
                                     collector=arch), b"at the site")
        rc, _, _ = self.cli("get", NS, ACC, "F", "k1", "--at", str(snap["snapshot"]),
                            collector=col)
        self.assertEqual(rc, 3)
        col.kill()
        # no primary: said, nothing written anywhere
        rc, _, err = self.cli("put", NS, ACC, "F", "k2", "lost?", addr=both)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "a commit with no primary")
        self.assertIn(b"no primary for namespace site-a", err)
        self.assertIn(b"unreachable", err)
        self.assertIn(b"standby", err)
        # reads still work, from the archiver
        self.assertEqual(c("get", NS, ACC, "F", "k1"), b"at the site")
        # promote finds the archiver among the addresses, the site's first
        self.assertIn(b"promoted site-a", c("promote", NS))
        c("put", NS, ACC, "F", "k2", "at the archiver")
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "k2", collector=arch),
                         b"at the archiver")
        self.assertEqual(c("get", NS, ACC, "F", "k2"), b"at the archiver")
        # the old site back, fenced: commits still go to the archiver
        col.start()
        wait_until(lambda: self.status(collector=col)["role"] == "fenced", 30,
                   "the restarted site to fence itself")
        c("put", NS, ACC, "F", "k3", "still the archiver")
        self.assertEqual(self.archived_ns(arch, NS)["applied_seq"], 4)
        self.assertEqual(self.last_seq(collector=col), 2)
        # bad lists and flags: one line, exit 2 for usage, 1 for a bad address
        rc, _, err = self.cli("get", NS, ACC, "F", "k1", "--prefer", "nearest", addr=both)
        self.assertEqual(rc, 2, err)
        for bad in (both + ",", "," + both, "a:1,,b:2"):
            rc, _, err = self.cli("get", NS, ACC, "F", "k1", addr=bad)
            self.assertEqual(rc, 1, (bad, err))
            self.assert_one_line(err, bad)
            self.assertIn(b"empty address", err)

    def test_a_load_across_a_forced_promote(self):
        """One client (`load --batch 1`, both addresses) commits item after
        item while the archiver is promoted by force: the commits refused by
        the site once it is fenced are sent again to the archiver, so the
        load ends well; every item is on the archiver or, committed by the
        site before it heard it was fenced, on the site alone."""
        arch, col = self.start_pair()
        both = "%s,%s" % (col.addr, arch.addr)
        n = 4000
        items = os.path.join(self.tmp, "items.tsv")
        with open(items, "wb") as f:
            f.write(b"".join(b"i%05d\tv%d\n" % (i, i) for i in range(n)))
        with open(items, "rb") as f:
            load = subprocess.Popen([harness.binary("understudy"), "--addr", both, "load", NS,
                                     ACC, "F", "--batch", "1"], stdin=f,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=harness.child_env())
        wait_until(lambda: self.last_seq(collector=col) > 200, 60, "the load to begin")
        self.cli_ok("promote", NS, "--force", collector=arch)
        _, err = load.communicate(timeout=300)
        self.assertEqual(load.returncode, 0, err)
        wait_until(lambda: self.status(collector=col)["role"] == "fenced", 30, "the fence")
        on_arch = set(self.list_ids(NS, ACC, "F", collector=arch))
        on_site = set(self.list_ids(NS, ACC, "F", collector=col))
        want = {b"i%05d" % i for i in range(n)}
        self.assertEqual(on_arch | on_site, want)
        # the site's own commits from the fork on are exactly the items only
        # it has (one entry each): what a rejoin will export
        st = self.status(collector=col)
        self.assertEqual(st["divergent_entries"], len(on_site - on_arch))
        self.assertEqual(st["fork_seq"] + st["divergent_entries"], st["last_seq"] + 1)
        # the end of the load went to the archiver, the new primary
        self.assertIn(b"i%05d" % (n - 1), on_arch)
        self.assertNotIn(b"i%05d" % (n - 1), on_site)
        self.assertEqual(self.cli_ok("get", NS, ACC, "F", "i%05d" % (n - 1), collector=arch),
                         b"v%d" % (n - 1))

    def test_kill_9_of_the_archiver_during_a_promote(self):
        """The archiver killed (-9) while a promote runs, at a few moments
        (one namespace each): after a restart the namespace is either still
        a standby at generation 1 or primary at generation 2, never between;
        promote again ends primary at generation 2 from the same seq;
        nothing the site acknowledged is lost, and the commits taken on the
        archiver after each promote are kept."""
        arch = self.start_archiver()
        delays = (0.0, 0.003, 0.02)
        names = ["site-k%d" % i for i in range(len(delays))]
        acked = {}
        for name in names:
            col = self.start_collector(archiver=arch.addr, namespace=name,
                                       heartbeat_interval="100ms")
            self.cli_ok("create-file", name, ACC, "F", collector=col)
            for i in range(10):
                self.cli_ok("put", name, ACC, "F", "k%d" % i, "v%d" % i, collector=col)
            acked[name] = self.last_seq(collector=col)
            self.wait_applied(arch, name, acked[name])
            col.kill()
        wait_until(lambda: not any(self.archived_ns(arch, n)["connected"] for n in names), 30,
                   "the sites gone")
        for name, delay_s in zip(names, delays):
            promote = subprocess.Popen([harness.binary("understudy"), "--addr", arch.addr,
                                        "promote", name], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=harness.child_env())
            time.sleep(delay_s)
            arch.kill()
            promote.communicate(timeout=60)
            arch.start()
            st = self.archived_ns(arch, name)
            self.assertIn((st["role"], st["generation"]), {("standby", 1), ("primary", 2)},
                          name)
            self.assertEqual(st["applied_seq"], acked[name], name)
            p = self.cli_json("promote", name, collector=arch)
            self.assertEqual((p["generation"], p["first_seq"]), (2, acked[name] + 1), name)
            self.cli_ok("put", name, ACC, "F", "after", "x", collector=arch)
        arch.restart()
        for name in names:
            st = self.archived_ns(arch, name)
            self.assertEqual((st["role"], st["generation"], st["applied_seq"]),
                             ("primary", 2, acked[name] + 1), name)
            for i in range(10):
                self.assertEqual(self.cli_ok("get", name, ACC, "F", "k%d" % i, collector=arch),
                                 b"v%d" % i)
            self.assertEqual(self.cli_ok("get", name, ACC, "F", "after", collector=arch), b"x")

    def test_bad_input(self):
        arch, col = self.start_pair()
        self.cli_ok("put", NS, ACC, "F", "k", "v", collector=col)
        self.wait_applied(arch, NS, self.last_seq(collector=col))
        for args, code in (((NS + "x",), 3), (("Bad/NS",), 1)):
            rc, _, err = self.cli("promote", *args, collector=arch)
            self.assertEqual(rc, code, (args, err))
            self.assert_one_line(err, "promote %s" % (args,))
        rc, _, err = self.cli("promote", collector=arch)
        self.assertEqual(rc, 2)
        rc, _, err = self.cli("promote", NS, collector=col)  # a collector has no Promote
        self.assertNotEqual(rc, 0)
        self.assert_one_line(err, "promote against a collector")
        st = self.archived_ns(arch, NS)
        self.assertEqual((st["role"], st["generation"]), ("standby", 1))
        self.assertEqual(self.status(collector=col)["role"], "primary")


if __name__ == "__main__":
    harness.main()
