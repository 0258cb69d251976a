"""test_history.py - a namespace has one history (issue 8; SPEC Guarantee 9).

Real processes: one archiver, collectors configured with `archiver = ADDR`,
driven with the `understudy` CLI. Checks data (items on the archiver, seqs,
status fields, exit codes), never log text:
  - two sites with the same namespace: the second is refused (its node id is
    not the one the namespace is bound to), the archiver keeps the first's
    data and keeps taking the first's stream; `understudy adopt` then accepts
    the second, which streams its own history from seq 1, and the old copy is
    kept on disk;
  - a site whose data dir is restored from an older copy and then commits
    other updates: refused at the same seq (the Hello's chain differs) and
    past it (the site itself refuses to stream into another history); the
    archiver's copy is unchanged;
  - adopt refuses bad input and changes nothing.
"""

import os
import shutil

import harness
from harness import Proto, SystemTest, dump_namespace, wait_until

NS = "site-e"
CATCH_UP_S = 30


class HistoryTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()

    def stub(self, daemon):
        return self.proto.stub(self.proto.channel(daemon.addr))

    def arch_ns(self, arch, ns=NS):
        return self.archived_ns(arch, ns)

    def site(self, arch, name):
        return self.start_collector(name=name, namespace=NS, archiver=arch.addr,
                                    heartbeat_interval="100ms")

    def put(self, col, *pairs):
        for k, v in pairs:
            self.cli_ok("put", NS, "ACC", "F", k, v, collector=col)

    def wait_caught_up(self, arch, col):
        def caught_up():
            site = self.cli_json("status", collector=col)
            a = self.arch_ns(arch)
            return (a is not None and a["durable_seq"] == site["last_seq"]
                    and site["archivers"][0]["acked_seq"] == site["last_seq"])
        wait_until(caught_up, CATCH_UP_S, "archiver to catch up with %s" % col.addr,
                   interval_s=0.05)

    def items(self, daemon):
        return dump_namespace(self.stub(daemon), self.proto, NS)[("ACC", "F")]["data"]

    def test_two_sites_one_namespace_then_adopt(self):
        arch = self.start_archiver()
        a = self.site(arch, "site-a-node")
        self.cli_ok("create-file", NS, "ACC", "F", collector=a)
        self.put(a, *[("k%d" % i, "from-a-%d" % i) for i in range(1, 6)])
        self.wait_caught_up(arch, a)
        self.assertEqual(self.arch_ns(arch)["applied_seq"], 6)

        b = self.site(arch, "site-b-node")
        self.cli_ok("create-file", NS, "ACC", "F", collector=b)
        self.put(b, *[("k%d" % i, "from-b-%d" % i) for i in range(1, 9)])
        self.assertEqual(self.cli_json("status", collector=b)["last_seq"], 9)
        wait_until(lambda: self.arch_ns(arch)["refusals"] >= 1, 20, "b to be refused")
        refusal = self.arch_ns(arch)["refusal"]
        a_node = self.cli_json("status", collector=a)  # no node id in status: from the refusal
        self.assertIn("adopt", refusal)
        self.assertIn("nothing applied", refusal)
        # nothing of b reached the copy; b is told nothing is durable there
        self.assertEqual(self.items(arch), {b"k%d" % i: b"from-a-%d" % i for i in range(1, 6)})
        self.assertEqual(self.arch_ns(arch)["applied_seq"], 6)
        self.assertEqual(self.cli_json("status", collector=b)["archivers"][0]["acked_seq"], 0)
        # a keeps streaming
        self.put(a, ("k6", "from-a-6"))
        self.wait_caught_up(arch, a)
        self.assertEqual(self.items(arch)[b"k6"], b"from-a-6")
        self.assertEqual(a_node["archivers"][0]["addr"], arch.addr)

        # The site a is gone for good; b is the rebuilt site: adopt it.
        a.kill()
        out = self.cli_json("adopt", NS, collector=arch)
        self.assertEqual(out["previous_seq"], 7)
        self.assertTrue(out["previous_site"])
        self.assertIn(out["previous_site"], refusal)
        self.assertTrue(os.path.isdir(out["kept_in"]), out)
        self.wait_caught_up(arch, b)
        self.assertEqual(self.items(arch), self.items(b))
        self.assertEqual(self.arch_ns(arch)["applied_seq"], 9)
        inspect = harness.run_inspect(os.path.join(arch.data_dir, "ns", NS))
        self.assertEqual((inspect["gaps"], inspect["bad_records"], inspect["chain_mismatches"]),
                         (0, 0, 0))
        # the old copy is kept, whole, and is not served
        old = harness.run_inspect(out["kept_in"])
        self.assertEqual(old["position_seq"], 7)
        # a, back with its old identity, is now the one refused
        a.start()
        wait_until(lambda: self.arch_ns(arch)["refusals"] >= 1, 20, "a to be refused")
        self.assertEqual(self.items(arch), self.items(b))

    def test_restored_old_copy_is_refused(self):
        arch = self.start_archiver()
        a = self.site(arch, "site")
        self.cli_ok("create-file", NS, "ACC", "F", collector=a)
        self.put(a, *[("k%d" % i, "v%d" % i) for i in range(1, 6)])  # seq 1..6
        self.wait_caught_up(arch, a)
        a.terminate()
        backup = os.path.join(self.tmp, "backup")
        shutil.copytree(a.data_dir, backup)
        a.start()
        self.put(a, ("k6", "v6"), ("k7", "v7"), ("k8", "v8"))  # seq 7..9
        self.wait_caught_up(arch, a)
        before = self.items(arch)
        a.kill()
        shutil.rmtree(a.data_dir)
        shutil.copytree(backup, a.data_dir)
        a.start()
        # Other updates on the restored copy, to the same seq as the archiver's.
        self.put(a, ("k6", "other6"), ("x7", "other7"), ("x8", "other8"))
        self.assertEqual(self.cli_json("status", collector=a)["last_seq"], 9)
        # (refused as behind while it was under seq 9, then for its history)
        wait_until(lambda: "history differs" in self.arch_ns(arch)["refusal"], 20,
                   "the restored site refused for its history")
        self.assertIn("seq 9", self.arch_ns(arch)["refusal"])
        # Past the archiver's seq: the site compares its chain with the
        # Welcome's and does not stream into another history.
        self.put(a, ("x9", "other9"))
        master = lambda: self.arch_ns(arch)["master_seq"]  # noqa: E731
        wait_until(lambda: master() == 10, 20, "the site's Hello at seq 10")
        st = self.arch_ns(arch)
        self.assertEqual((st["applied_seq"], st["durable_seq"]), (9, 9))
        self.assertEqual(self.items(arch), before)
        # none of the restored site's new updates (seq 7..10) is acknowledged
        self.assertLess(self.cli_json("status", collector=a)["archivers"][0]["acked_seq"], 7)

    def test_adopt_bad_input_changes_nothing(self):
        arch = self.start_archiver()
        a = self.site(arch, "site")
        self.cli_ok("create-file", NS, "ACC", "F", collector=a)
        self.put(a, ("k", "v"))
        self.wait_caught_up(arch, a)
        rc, _, err = self.cli("adopt", "no-such-ns", collector=arch)
        self.assertEqual(rc, 3, err)
        self.assert_one_line(err)
        rc, _, err = self.cli("adopt", "Bad NS", collector=arch)
        self.assertEqual(rc, 1, err)
        self.assertIn("namespace", err.decode())
        rc, _, err = self.cli("adopt", collector=arch)
        self.assertEqual(rc, 2, err)
        rc, _, err = self.cli("adopt", NS, collector=a)  # a collector has no copy to adopt
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(self.arch_ns(arch)["applied_seq"], 2)
        self.assertEqual(self.items(arch), {b"k": b"v"})


if __name__ == "__main__":
    harness.main()
