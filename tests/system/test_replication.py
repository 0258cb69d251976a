"""test_replication.py - a site streams its journal into the archiver (issue 4).

Real processes on loopback: an understudy-archiver and collectors configured
with `archiver = ADDR`. Checks data, through the Store service of both ends
(python3-grpcio Scan/ListFiles) and the CLI, never log text:
  - items, bodies with marks, deletes, DICT, clear-file and delete-file reach
    the archiver exactly; status on both ends shows the same position;
  - unlogged files never leave the site; logging off marks the file stale on
    the archiver at that seq;
  - the archiver killed with SIGKILL mid-stream and restarted, and a collector
    killed mid-stream and restarted: afterwards both ends hold the same data,
    and the archiver's journal is contiguous (understudy-inspect);
  - the archiver refuses a namespace its config does not list.
"""

import threading
import time

import harness
from harness import Proto, SystemTest, dump_namespace, run_inspect, wait_until

NS = "site-a"
CATCH_UP_S = 30


class ReplicationTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()

    def start_pair(self, ns=NS, archiver_config=None, **collector_config):
        arch = self.start_archiver(**(archiver_config or {}))
        col = self.start_collector(namespace=ns, archiver=arch.addr,
                                   heartbeat_interval="100ms", **collector_config)
        return arch, col

    def stub(self, daemon):
        return self.proto.stub(self.proto.channel(daemon.addr))

    def wait_caught_up(self, arch, col, ns=NS):
        """Until the archiver has applied and synced the collector's last seq."""
        def caught_up():
            site = self.cli_json("status", collector=col)
            a = self.cli_json("status", collector=arch)
            mine = [n for n in a["namespaces"] if n["namespace"] == ns]
            return (mine and mine[0]["applied_seq"] == site["last_seq"]
                    and mine[0]["durable_seq"] == site["last_seq"]
                    and site["archivers"][0]["acked_seq"] == site["last_seq"])
        wait_until(caught_up, CATCH_UP_S, "archiver to catch up with %s" % col.addr,
                   interval_s=0.05)

    def assert_same(self, arch, col, ns=NS):
        site = dump_namespace(self.stub(col), self.proto, ns)
        archived = dump_namespace(self.stub(arch), self.proto, ns)
        shipped = {k: v for k, v in site.items() if v["shipped"]}
        self.assertEqual(sorted(archived), sorted(shipped), "files differ")
        for key in shipped:
            self.assertEqual(archived[key]["data"], shipped[key]["data"], "DATA of %s" % (key,))
            self.assertEqual(archived[key]["dict"], shipped[key]["dict"], "DICT of %s" % (key,))
        return site, archived

    def test_stream_reaches_archiver(self):
        arch, col = self.start_pair()
        c = lambda *a, **kw: self.cli_ok(*a, collector=col, **kw)
        c("create-file", NS, "ACC", "CUST")
        c("create-file", NS, "ACC", "GONE")
        c("create-file", NS, "ACC2", "X")
        body = b"NAME\xfeADDR 1\xfdADDR 2\xfcSUB\xfe\x01\x7f"
        c("put", NS, "ACC", "CUST", "1001", body)
        c("put", NS, "ACC", "CUST", "1002", stdin=b"")
        c("put", NS, "ACC", "CUST", "D1", b"dict body", "--dict")
        c("put", NS, "ACC", "GONE", "x", "y")
        c("put", NS, "ACC2", "X", "a", "1")
        c("put", NS, "ACC2", "X", "b", "2")
        c("delete", NS, "ACC2", "X", "a")
        c("clear-file", NS, "ACC2", "X")
        c("put", NS, "ACC2", "X", "c", "3")
        c("delete-file", NS, "ACC", "GONE")
        tsv = "".join("%05d\tv%d\\xFE%d\n" % (i, i, i) for i in range(3000)).encode()
        c("load", NS, "ACC", "CUST", "--batch", "250", stdin=tsv)
        self.wait_caught_up(arch, col)
        site, archived = self.assert_same(arch, col)
        self.assertEqual(archived[("ACC", "CUST")]["data"][b"1001"], body)
        self.assertEqual(archived[("ACC", "CUST")]["data"][b"1002"], b"")
        self.assertNotIn(("ACC", "GONE"), archived)
        self.assertEqual(archived[("ACC2", "X")]["data"], {b"c": b"3"})
        self.assertEqual(len(archived[("ACC", "CUST")]["data"]), 3002)
        # The CLI reads the archiver the same way.
        rc, out, _ = self.cli("get", NS, "ACC", "CUST", "1001", collector=arch)
        self.assertEqual((rc, out), (0, body))
        # Status shapes (SPEC) and agreement.
        s = self.cli_json("status", collector=col)
        self.assertEqual(s["commit_mode"], "async")
        self.assertEqual(s["archivers"][0]["addr"], arch.addr)
        self.assertTrue(s["archivers"][0]["connected"])
        self.assertEqual(s["archivers"][0]["lag_entries"], 0)
        a = self.cli_json("status", collector=arch)
        self.assertEqual(a["node"], "archiver")
        n = a["namespaces"][0]
        for key in ("namespace", "role", "generation", "applied_seq", "durable_seq",
                    "master_seq", "lag_entries", "lag_ms", "connected", "heartbeat_age_ms"):
            self.assertIn(key, n)
        self.assertEqual((n["namespace"], n["role"], n["generation"]), (NS, "standby", 1))
        self.assertEqual(n["master_seq"], s["last_seq"])
        self.assertEqual(n["lag_entries"], 0)
        self.assertTrue(n["connected"])
        # Heartbeats keep coming while idle: the age stays small.
        wait_until(lambda: 0 <= self.cli_json("status", collector=arch)["namespaces"][0]
                   ["heartbeat_age_ms"] < 1000, 10, "a recent heartbeat")
        # The archiver refuses writes: it is a standby.
        rc, _, err = self.cli("put", NS, "ACC", "CUST", "z", "1", collector=arch)
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err)
        arch.terminate()
        info = run_inspect(arch.data_dir + "/ns/" + NS)
        self.assertEqual((info["gaps"], info["bad_records"]), (0, 0))
        self.assertEqual(info["last_seq"], s["last_seq"])
        self.assertEqual(info["first_seq"], 1)

    def test_unlogged_never_leaves_and_stale_marker(self):
        arch, col = self.start_pair()
        c = lambda *a, **kw: self.cli_ok(*a, collector=col, **kw)
        c("create-file", NS, "ACC", "LOCAL", "--unlogged")
        c("put", NS, "ACC", "LOCAL", "secret", "s")
        c("create-file", NS, "ACC", "LOG")
        c("put", NS, "ACC", "LOG", "k", "v")
        seq_off = self.cli_json("set-logging", NS, "ACC", "LOG", "off", collector=col)["seq"]
        c("put", NS, "ACC", "LOG", "after", "not shipped")
        c("create-file", NS, "OFFACC", "F")
        c("put", NS, "OFFACC", "F", "a", "1")
        c("set-logging", NS, "OFFACC", "off")
        c("put", NS, "OFFACC", "F", "b", "not shipped")
        self.wait_caught_up(arch, col)
        archived = dump_namespace(self.stub(arch), self.proto, NS)
        self.assertNotIn(("ACC", "LOCAL"), archived)
        self.assertEqual(archived[("ACC", "LOG")]["data"], {b"k": b"v"})
        self.assertEqual(archived[("ACC", "LOG")]["stale_since_seq"], seq_off)
        self.assertEqual(archived[("OFFACC", "F")]["data"], {b"a": b"1"})
        self.assertGreater(archived[("OFFACC", "F")]["stale_since_seq"], 0)
        # Logging on again re-ships each file's whole contents: what changed
        # while it was off (writes and deletes) shows, and it is no longer stale.
        c("delete", NS, "ACC", "LOG", "k")
        c("put", NS, "ACC", "LOG", "d", "dict while off", "--dict")
        c("set-logging", NS, "ACC", "LOG", "on")
        c("set-logging", NS, "OFFACC", "on")
        c("set-logging", NS, "ACC", "LOCAL", "on")
        self.wait_caught_up(arch, col)
        archived = dump_namespace(self.stub(arch), self.proto, NS)
        self.assertEqual(archived[("ACC", "LOG")]["data"], {b"after": b"not shipped"})
        self.assertEqual(archived[("ACC", "LOG")]["dict"], {b"d": b"dict while off"})
        self.assertEqual(archived[("ACC", "LOG")]["stale_since_seq"], 0)
        self.assertEqual(archived[("OFFACC", "F")]["data"], {b"a": b"1", b"b": b"not shipped"})
        self.assertEqual(archived[("OFFACC", "F")]["stale_since_seq"], 0)
        self.assertEqual(archived[("ACC", "LOCAL")]["data"], {b"secret": b"s"})
        self.assert_same(arch, col)

    def test_archiver_killed_mid_stream(self):
        arch, col = self.start_pair()
        self.cli_ok("create-file", NS, "ACC", "F", collector=col)
        stop = threading.Event()
        errors = []

        def load():
            i = 0
            while not stop.is_set():
                tsv = "".join("k%06d\tv%d\\xFE\n" % (i + j, i + j) for j in range(200)).encode()
                rc, _, err = self.cli("load", NS, "ACC", "F", stdin=tsv, collector=col)
                if rc != 0:
                    errors.append(err)
                    return
                i += 200
        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            for _ in range(3):
                wait_until(lambda: self.cli_json("status", collector=arch)["namespaces"]
                           and self.cli_json("status", collector=arch)["namespaces"][0]
                           ["applied_seq"] > 0, 20, "the archiver to apply something")
                time.sleep(self.rng.uniform(0.1, 0.5))  # let the stream run: a random moment
                arch.kill()
                arch.start()
        finally:
            stop.set()
            t.join(60)
        self.assertEqual(errors, [])
        self.wait_caught_up(arch, col)
        self.assert_same(arch, col)
        col.terminate()
        arch.terminate()
        info = run_inspect(arch.data_dir + "/ns/" + NS)
        self.assertEqual((info["gaps"], info["bad_records"]), (0, 0))
        self.assertEqual(info["last_seq"], info["position_seq"])
        self.assertEqual(info["first_seq"], 1)

    def test_collector_killed_mid_stream(self):
        arch, col = self.start_pair()
        self.cli_ok("create-file", NS, "ACC", "F", collector=col)
        for round_ in range(3):
            tsv = "".join("r%d-%05d\tv\\xFD%d\n" % (round_, j, j) for j in range(4000)).encode()
            proc_done = threading.Event()

            def load():
                self.cli("load", NS, "ACC", "F", "--batch", "100", stdin=tsv, collector=col)
                proc_done.set()
            t = threading.Thread(target=load, daemon=True)
            t.start()
            time.sleep(self.rng.uniform(0.05, 0.3))
            col.kill()
            t.join(30)
            col.start()
        self.wait_caught_up(arch, col)
        self.assert_same(arch, col)

    def test_namespace_not_configured_is_refused(self):
        arch = self.start_archiver(**{"namespace site-b": {}})
        col = self.start_collector(namespace="site-a", archiver=arch.addr,
                                   heartbeat_interval="100ms")
        self.cli_ok("create-file", "site-a", "ACC", "F", collector=col)
        self.cli_ok("put", "site-a", "ACC", "F", "k", "v", collector=col)
        # The link keeps being refused: never connected, nothing stored there.
        time.sleep(0.5)
        s = self.cli_json("status", collector=col)
        self.assertFalse(s["archivers"][0]["connected"])
        self.assertEqual(s["archivers"][0]["acked_seq"], 0)
        self.assertEqual(self.cli_json("status", collector=arch)["namespaces"], [])


if __name__ == "__main__":
    harness.main()
