"""test_bench.py - understudy-bench against a real collector and archiver.

A short run must report numbers that agree with what the stores hold:
  - commit: every measured write is there (data_items >= commits x ops);
  - replicate: every write of the run is one seq at its site and durable on
    the archiver afterwards, the replicated items counted in the window are
    the durable seqs advanced, every measured commit has a lag sample;
  - apply: replays exactly the collector's journal (entry count, last seq).
Bad flags exit 2; an unreachable server or unreadable store exits 1 with one
line.
"""

import glob
import json
import os
import subprocess

import harness
from harness import SystemTest, binary, child_env, free_port

NS = "site-a"


class BenchTest(SystemTest):

    def bench(self, *args, timeout=120):
        r = subprocess.run([binary("understudy-bench")] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, env=child_env())
        return r.returncode, r.stdout, r.stderr

    def test_short_run_json(self):
        c = self.start_collector()
        rc, out, err = self.bench("commit", "--addr", c.addr, "--clients", "4", "--ops", "5",
                                  "--body", "300", "--duration", "1s", "--warmup", "200ms",
                                  "--json")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        for key in ("clients", "ops_per_commit", "body_bytes", "commits", "ops", "commits_per_s",
                    "ops_per_s", "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "errors"):
            self.assertIn(key, j)
        self.assertEqual((j["clients"], j["ops_per_commit"], j["body_bytes"], j["errors"]),
                         (4, 5, 300, 0))
        self.assertGreater(j["commits"], 0)
        self.assertEqual(j["ops"], j["commits"] * 5)
        self.assertLessEqual(j["latency_p50_ms"], j["latency_p99_ms"])
        self.assertLessEqual(j["latency_p99_ms"], j["latency_max_ms"])
        info = self.files(NS)[("BENCH", "BENCH")]
        self.assertGreaterEqual(info["data_items"], j["ops"])
        # every journaled write is one seq: create-file + at least the measured writes
        self.assertGreaterEqual(self.last_seq(), 1 + j["ops"])
        # a body the bench wrote holds Pick marks
        first = self.list_ids(NS, "BENCH", "BENCH", "--limit", "1")[0]
        rc, body, _ = self.cli("get", NS, "BENCH", "BENCH", first)
        self.assertEqual((rc, len(body)), (0, 300))
        self.assertIn(b"\xfe", body)
        # a second run on the existing file is fine (text output)
        rc, out, err = self.bench("commit", "--addr", c.addr, "--clients", "1",
                                  "--duration", "300ms", "--warmup", "0")
        self.assertEqual(rc, 0, err)
        self.assertIn(b"commits/s", out)

    def test_failures(self):
        rc, out, _ = self.bench("--help")
        self.assertEqual(rc, 0)
        self.assertIn(b"usage", out)
        for args in (("commit", "--bogus"), ("commit", "--clients", "0"),
                     ("commit", "--duration", "soon"), ("commit", "--ops"), ()):
            rc, _, err = self.bench(*args)
            self.assertEqual(rc, 2, "%r: %r" % (args, err))
        rc, _, err = self.bench("commit", "--addr", "127.0.0.1:%d" % free_port(),
                                "--duration", "1s")
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "unreachable collector")
        c = self.start_collector(max_body="1KiB")
        rc, _, err = self.bench("commit", "--addr", c.addr, "--clients", "2", "--body", "2000",
                                "--duration", "1s", "--warmup", "0")
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "failing commits")
        self.assertIn(b"failed", err)

    # ---- replicate and apply

    def archived_ns(self, arch, ns):
        mine = [n for n in self.status(collector=arch)["namespaces"] if n["namespace"] == ns]
        self.assertEqual(len(mine), 1, "archiver namespaces: %r" % (mine,))
        return mine[0]

    def check_site(self, j, site, arch, ops):
        """A site's figures agree with its store and the archiver's."""
        s = [x for x in j["sites"] if x["addr"] == site.addr]
        self.assertEqual(len(s), 1)
        s = s[0]
        # nothing else writes: the run's writes are exactly the seqs advanced
        self.assertEqual(s["total_items"], s["total_commits"] * ops)
        self.assertEqual(s["seq_after"] - s["seq_before"], s["total_items"])
        self.assertEqual(self.last_seq(collector=site), s["seq_after"])
        # the bench waited until all of it was durable on the archiver
        self.assertEqual(s["durable_seq_after"], s["seq_after"])
        a = self.archived_ns(arch, s["namespace"])
        self.assertEqual((a["applied_seq"], a["durable_seq"]), (s["seq_after"], s["seq_after"]))
        # items counted durable in the window are the durable seqs advanced
        self.assertGreater(s["replicated_items"], 0)
        self.assertEqual(s["replicated_items"], s["durable_seq_last"] - s["durable_seq_first"])
        self.assertGreaterEqual(s["durable_seq_first"], s["seq_before"])
        self.assertLessEqual(s["durable_seq_last"], s["seq_after"])
        self.assertAlmostEqual(s["replicated_items_per_s"] * j["sample_s"], s["replicated_items"],
                               delta=1)
        # ids are distinct within one run: the archive holds every write
        info = self.files(s["namespace"], collector=arch)[("BENCH", "BENCH")]
        self.assertEqual(info["data_items"], s["total_items"])
        return s

    def test_replicate_and_apply(self):
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        rc, out, err = self.bench("replicate", "--archiver", arch.addr, "--sites", col.addr,
                                  "--clients", "3", "--ops", "5", "--body", "200",
                                  "--duration", "1s", "--warmup", "200ms", "--json")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        for key in ("n_sites", "clients_per_site", "ops_per_commit", "body_bytes", "commits",
                    "items", "commits_per_s", "items_per_s", "replicated_items",
                    "replicated_items_per_s", "sample_s", "lag_samples", "lag_p50_ms",
                    "lag_p99_ms", "lag_max_ms", "lag_poll_ms", "lag_unmatched", "errors",
                    "sites"):
            self.assertIn(key, j)
        self.assertEqual((j["n_sites"], j["clients_per_site"], j["ops_per_commit"],
                          j["body_bytes"], j["errors"], j["lag_unmatched"]),
                         (1, 3, 5, 200, 0, 0))
        self.assertGreater(j["commits"], 0)
        self.assertEqual(j["items"], j["commits"] * 5)
        self.assertGreaterEqual(j["total_items"], j["items"])
        s = self.check_site(j, col, arch, 5)
        self.assertEqual(s["namespace"], "site-a")
        self.assertEqual(j["replicated_items"], s["replicated_items"])
        # every measured commit got its lag, and the lag is ordered and positive
        self.assertEqual(j["lag_samples"], j["commits"])
        self.assertGreater(j["lag_p50_ms"], 0)
        self.assertLessEqual(j["lag_p50_ms"], j["lag_p99_ms"])
        self.assertLessEqual(j["lag_p99_ms"], j["lag_max_ms"])
        self.assertGreater(j["sample_s"], 0.5)

        # apply replays the collector's journal exactly (its store opened
        # read-only while it runs), and the archiver's copy the same way
        last = self.last_seq(collector=col)
        for data_dir in (col.data_dir, os.path.join(arch.data_dir, "ns", NS)):
            rc, out, err = self.bench("apply", "--from", data_dir, "--tmp-dir", self.tmp,
                                      "--json")
            self.assertEqual(rc, 0, err)
            a = json.loads(out)
            self.assertEqual((a["first_seq"], a["last_seq"], a["entries"]), (1, last, last))
            self.assertGreaterEqual(a["frames"], 1)
            self.assertGreater(a["raw_bytes"], a["entries"] * 200)
            for mode in ("sync_once", "sync_each_frame"):
                self.assertGreater(a[mode]["entries_per_s"], 0)
                self.assertGreater(a[mode]["mb_per_s"], 0)
            self.assertEqual(a["sync_once"]["syncs"], 1)
            self.assertEqual(a["sync_each_frame"]["syncs"], a["frames"] + 1)
        self.assertEqual(glob.glob(os.path.join(self.tmp, "understudy-bench-apply-*")), [])
        # --frames 1: one frame of whole commits
        rc, out, err = self.bench("apply", "--from", col.data_dir, "--frames", "1",
                                  "--tmp-dir", self.tmp, "--json")
        self.assertEqual(rc, 0, err)
        a = json.loads(out)
        self.assertEqual((a["frames"], a["entries"]), (1, a["last_seq"]))
        self.assertLessEqual(a["last_seq"], last)

    def test_replicate_two_sites_paced(self):
        arch = self.start_archiver()
        cols = [self.start_collector(namespace=ns, archiver=arch.addr,
                                     heartbeat_interval="100ms")
                for ns in ("site-a", "site-b")]
        rc, out, err = self.bench("replicate", "--archiver", arch.addr,
                                  "--sites", ",".join(c.addr for c in cols), "--clients", "2",
                                  "--ops", "1", "--rate", "100", "--duration", "1s",
                                  "--warmup", "200ms", "--json")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual((j["n_sites"], j["rate"], j["errors"], j["lag_unmatched"]),
                         (2, 100, 0, 0))
        # paced: never more than offered (a schedule catches up, never runs ahead)
        self.assertGreater(j["commits"], 0)
        self.assertLessEqual(j["commits"], 100 * 1.0 + 4)
        self.assertEqual(j["lag_samples"], j["commits"])
        sites = [self.check_site(j, c, arch, 1) for c in cols]
        self.assertEqual(sorted(s["namespace"] for s in sites), ["site-a", "site-b"])
        self.assertEqual(j["replicated_items"], sum(s["replicated_items"] for s in sites))
        self.assertEqual(j["total_items"], sum(s["total_items"] for s in sites))

    def test_replicate_apply_failures(self):
        for args in (("replicate",), ("replicate", "--sites", "127.0.0.1:1"),
                     ("replicate", "--archiver", "127.0.0.1:1"),
                     ("replicate", "--archiver", "a:1", "--sites", "b:1,,c:1"),
                     ("replicate", "--archiver", "a:1", "--sites", "b:1,b:1"),
                     ("replicate", "--archiver", "a:1", "--sites", "b:1", "--rate", "-5"),
                     ("replicate", "--archiver", "a:1", "--sites", "b:1", "--from", "x"),
                     ("replicate", "--archiver", "a:1", "--sites", "b:1", "--clients", "0"),
                     ("apply",), ("apply", "--from", "x", "--frames", "many"),
                     ("apply", "--from", "x", "--clients", "2"),
                     ("commit", "--archiver", "a:1")):
            rc, _, err = self.bench(*args)
            self.assertEqual(rc, 2, "%r: %r" % (args, err))
        arch = self.start_archiver()
        col = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        lone = self.start_collector(namespace="site-c")  # streams nowhere
        dead = "127.0.0.1:%d" % free_port()
        cases = (("archiver unreachable", dead, col.addr),
                 ("site unreachable", arch.addr, col.addr + "," + dead),
                 ("archiver is a collector", col.addr, col.addr),
                 ("site is the archiver", arch.addr, arch.addr),
                 ("site streams nowhere", arch.addr, lone.addr))
        for what, archiver, sites in cases:
            rc, _, err = self.bench("replicate", "--archiver", archiver, "--sites", sites,
                                    "--duration", "300ms", "--warmup", "0")
            self.assertEqual(rc, 1, "%s: %r" % (what, err))
            self.assert_one_line(err, what)
        rc, _, err = self.bench("replicate", "--archiver", arch.addr, "--sites", col.addr,
                                "--ns-prefix", "other", "--duration", "300ms")
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "namespace prefix")
        rc, _, err = self.bench("apply", "--from", os.path.join(self.tmp, "no-such-store"))
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "missing store")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "no-such-store")))


    def test_failover(self):
        """understudy-bench failover: a dead site's namespace promoted while
        another site commits; its figures, and its refusals."""
        arch = self.start_archiver()
        dead = self.start_collector(archiver=arch.addr, namespace="site-x",
                                    heartbeat_interval="100ms")
        other = self.start_collector(archiver=arch.addr, namespace="site-y",
                                     heartbeat_interval="100ms")
        self.cli_ok("create-file", "site-x", "ACC", "F", collector=dead)
        harness.wait_until(lambda: (self.archived_ns(arch, "site-x") or {}).get("applied_seq")
                           == 1, 30, "the archiver to apply site-x")
        dead.kill()
        rc, out, err = self.bench("failover", "--archiver", arch.addr, "--ns", "site-x",
                                  "--sites", other.addr, "--json")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual((j["bench"], j["rounds"], j["other_sites"]), ("failover", 1, 1))
        self.assertGreater(j["promote_ms"], 0)
        self.assertGreaterEqual(j["first_commit_ms"], j["promote_ms"])
        self.assertGreater(j["others_commits_before"], 0)
        self.assertGreater(j["others_commits_during"], 0)
        st = self.archived_ns(arch, "site-x")
        self.assertEqual((st["role"], st["generation"], st["applied_seq"]), ("primary", 2, 2))
        # a primary already, no such namespace, bad flags: exit 1 or 2, nothing changed
        rc, _, err = self.bench("failover", "--archiver", arch.addr, "--ns", "site-x")
        self.assertEqual(rc, 1, err)
        self.assertIn(b"primary already", err)
        rc, _, err = self.bench("failover", "--archiver", arch.addr, "--ns", "nope")
        self.assertEqual(rc, 1, err)
        rc, _, err = self.bench("failover", "--ns", "site-x")
        self.assertEqual(rc, 2, err)
        rc, _, err = self.bench("failover", "--archiver", arch.addr, "--ns", "site-y",
                                "--bogus", "1")
        self.assertEqual(rc, 2, err)
        self.assertEqual(self.archived_ns(arch, "site-y")["role"], "standby")
        self.assertEqual(self.archived_ns(arch, "site-x")["applied_seq"], 2)

    def test_switchover(self):
        """understudy-bench switchover: a live site promoted away by force,
        rejoined, then switched back under a load through both addresses;
        its figures, and the state it leaves: the site primary at generation
        3, every commit of the load on both sides."""
        arch = self.start_archiver()
        site = self.start_collector(archiver=arch.addr, heartbeat_interval="100ms")
        self.cli_ok("create-file", "site-a", "BENCH", "SWITCHOVER", collector=site)
        rc, out, err = self.bench("switchover", "--archiver", arch.addr, "--site", site.addr,
                                  "--rounds", "1", "--json")
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual((j["bench"], j["rounds"]), ("switchover", 1))
        for k in ("rejoin_ms", "switchover_call_ms", "write_pause_ms", "commit_gap_ms"):
            self.assertGreater(j[k], 0, k)
        self.assertGreaterEqual(j["write_pause_ms"], j["commit_gap_ms"])
        st = self.status(collector=site)
        self.assertEqual((st["role"], st["generation"]), ("primary", 3))
        harness.wait_until(lambda: self.archived_ns(arch, "site-a")["applied_seq"] ==
                           self.last_seq(collector=site), 30, "the archiver to follow the site")
        self.assertEqual(self.list_ids("site-a", "BENCH", "SWITCHOVER", collector=arch),
                         self.list_ids("site-a", "BENCH", "SWITCHOVER", collector=site))
        # bad flags, or an archiver given as the site: exit 2 or 1, nothing changed
        rc, _, err = self.bench("switchover", "--archiver", arch.addr)
        self.assertEqual(rc, 2, err)
        rc, _, err = self.bench("switchover", "--archiver", arch.addr, "--site", arch.addr)
        self.assertEqual(rc, 1, err)
        self.assertIn(b"not a collector", err)
        self.assertEqual(self.status(collector=site)["role"], "primary")


if __name__ == "__main__":
    harness.main()
