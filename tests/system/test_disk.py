"""test_disk.py - a full disk, a vanished or read-only data dir (issue 8;
SPEC Guarantee 10: refused and reported, no daemon aborts, nothing is
acknowledged that is not durable).

Real processes with their data dirs on a tmpfs of our own (mount needs root:
CI runs as root; elsewhere the tests skip), filled with a ballast file:
  - an archiver under its disk_reserve refuses the site's frames with "disk
    full", keeps serving reads and status, is retried at the backoff's pace
    (not ten times a second), and catches up by itself once space returns;
  - a collector under its reserve refuses commits with RESOURCE_EXHAUSTED
    and keeps serving reads; commits work again once space returns;
  - an archiver with no reserve on a disk that really fills (RocksDB's own
    writes fail with ENOSPC) stays up, refuses, never acknowledges what it
    could not write, and once space returns reopens the store and catches
    up exactly, by itself;
  - an archiver started on a full disk starts, and its namespace resumes
    by itself once space returns;
  - a data dir deleted under a running archiver or collector stops their
    acknowledgements (the site's acked seq does not move);
  - an archiver whose data dir is read-only refuses to start, in one line.
Checks data (seqs, bodies, exit codes, status fields), never log text.
"""

import os
import subprocess
import time

import harness
from harness import Proto, SystemTest, dump_namespace, wait_until

NS = "site-a"
CATCH_UP_S = 60
MIB = 1024 * 1024


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskTest(SystemTest):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        self.proto = Proto()
        self.mounts = []

    def tearDown(self):
        try:
            super().tearDown()  # kills the daemons first: then the mounts are free
        finally:
            for m in reversed(self.mounts):
                subprocess.run(["umount", "-l", m], capture_output=True)

    def mount_tmpfs(self, name, size_mib, read_only=False):
        path = os.path.join(self.tmp, name)
        os.makedirs(path, exist_ok=True)
        opts = "size=%dm" % size_mib + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                           capture_output=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs: %s" % r.stderr.decode(errors="replace"))
        self.mounts.append(path)
        return path

    def fill(self, mount, leave_bytes):
        """A ballast file that leaves about leave_bytes free on mount."""
        path = os.path.join(mount, "ballast")
        with open(path, "ab") as f:
            need = free_bytes(mount) - leave_bytes
            chunk = b"\0" * MIB
            while need > 0:
                n = min(need, len(chunk))
                try:
                    f.write(chunk[:n])
                    f.flush()
                except OSError:
                    break  # full
                need -= n
        return path

    # ---- helpers

    def stub(self, daemon):
        return self.proto.stub(self.proto.channel(daemon.addr))

    def arch_ns(self, arch, ns=NS):
        return self.archived_ns(arch, ns)

    def wait_caught_up(self, arch, col, ns=NS, timeout_s=CATCH_UP_S):
        def caught_up():
            site = self.cli_json("status", collector=col)
            a = self.arch_ns(arch, ns)
            return (a is not None and a["applied_seq"] == site["last_seq"]
                    and a["durable_seq"] == site["last_seq"]
                    and site["archivers"][0]["acked_seq"] == site["last_seq"])
        wait_until(caught_up, timeout_s, "archiver to catch up with %s" % col.addr,
                   interval_s=0.05)

    def assert_same(self, arch, col, ns=NS):
        site = dump_namespace(self.stub(col), self.proto, ns)
        archived = dump_namespace(self.stub(arch), self.proto, ns)
        shipped = {k: v for k, v in site.items() if v["shipped"]}
        self.assertEqual(sorted(archived), sorted(shipped))
        for key in shipped:
            self.assertEqual(archived[key]["data"], shipped[key]["data"], "DATA of %s" % (key,))
            self.assertEqual(archived[key]["dict"], shipped[key]["dict"], "DICT of %s" % (key,))

    def put_many(self, col, prefix, n, body_bytes=100):
        for i in range(n):
            self.cli_ok("put", NS, "ACC", "F", "%s%d" % (prefix, i), b"b" * body_bytes,
                        collector=col)

    def commit_big(self, col, prefix, n_commits, items=4, item_bytes=MIB):
        """Large commits through the Store service (fast: few round trips)."""
        stub = self.stub(col)
        for c in range(n_commits):
            ops = [self.proto.Op(kind=self.proto.Op.Kind.Value("WRITE"), account="ACC",
                                 file="F", id=b"%s-%d-%d" % (prefix.encode(), c, i),
                                 body=bytes([c % 251]) * item_bytes)
                   for i in range(items)]
            stub.Commit(self.proto.CommitRequest(namespace=NS, ops=ops), timeout=60)

    def pair(self, arch_dir=None, col_dir=None, arch_config=None, col_config=None):
        arch = self.start_archiver(**dict({"data_dir": arch_dir} if arch_dir else {},
                                          **(arch_config or {})))
        col = self.start_collector(namespace=NS, archiver=arch.addr, heartbeat_interval="100ms",
                                   **dict({"data_dir": col_dir} if col_dir else {},
                                          **(col_config or {})))
        self.cli_ok("create-file", NS, "ACC", "F", collector=col)
        return arch, col

    # ---- tests

    def test_archiver_under_reserve_refuses_backs_off_and_resumes(self):
        fs = self.mount_tmpfs("archfs", 256)
        arch, col = self.pair(arch_dir=os.path.join(fs, "data"),
                              arch_config={"disk_reserve": "120MiB"})
        self.put_many(col, "before", 10)
        self.wait_caught_up(arch, col)
        applied = self.arch_ns(arch)["applied_seq"]
        ballast = self.fill(fs, 60 * MIB)

        # The site goes on committing (async: durable at the site); the
        # archiver refuses its frames, whole, and says why.
        self.put_many(col, "during", 10)
        wait_until(lambda: self.arch_ns(arch)["refusals"] >= 1, 20, "a refusal")
        st = self.arch_ns(arch)
        self.assertIn("disk full", st["refusal"])
        self.assertEqual(st["applied_seq"], applied, "a frame was applied under the reserve")
        # Reads and status go on.
        self.assertEqual(self.cli_ok("get", NS, "ACC", "F", "before3", collector=arch),
                         b"b" * 100)
        self.assertTrue(arch.is_running())
        # Backoff: the site retries at 100 ms doubling to 5 s (with jitter),
        # not at every Welcome (about 9 retries a second before the fix).
        r0, t0 = self.arch_ns(arch)["refusals"], time.monotonic()
        wait_until(lambda: time.monotonic() - t0 >= 6.0, 10, "a 6 s window")
        retries = self.arch_ns(arch)["refusals"] - r0
        self.assertLessEqual(retries, 6, "%d refused pushes in 6 s: no backoff" % retries)
        site = self.cli_json("status", collector=col)
        self.assertLessEqual(site["archivers"][0]["acked_seq"], applied)

        os.unlink(ballast)
        self.wait_caught_up(arch, col)
        self.assertEqual(self.arch_ns(arch)["refusals"], 0)
        self.assert_same(arch, col)

    def test_collector_under_reserve_refuses_commits(self):
        fs = self.mount_tmpfs("colfs", 256)
        col = self.start_collector(namespace=NS, data_dir=os.path.join(fs, "data"),
                                   disk_reserve="120MiB")
        self.cli_ok("create-file", NS, "ACC", "F")
        self.cli_ok("put", NS, "ACC", "F", "k1", "v1")
        seq = self.cli_json("status")["last_seq"]
        ballast = self.fill(fs, 60 * MIB)
        rc, _, err = self.cli("put", NS, "ACC", "F", "k2", "v2")
        self.assertEqual(rc, 1, err)
        self.assert_one_line(err, "put on a full disk")
        self.assertIn("disk full", err.decode())
        # the status code a client acts on: RESOURCE_EXHAUSTED, not INTERNAL
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub(col).Commit(self.proto.CommitRequest(namespace=NS, ops=[self.proto.Op(
                kind=self.proto.Op.Kind.Value("WRITE"), account="ACC", file="F", id=b"k3",
                body=b"v3")]), timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.cli_json("status")["last_seq"], seq, "a refused commit moved seq")
        self.assertEqual(self.cli_ok("get", NS, "ACC", "F", "k1"), b"v1")
        os.unlink(ballast)
        self.cli_ok("put", NS, "ACC", "F", "k2", "v2")
        self.assertEqual(self.cli_ok("get", NS, "ACC", "F", "k2"), b"v2")
        self.assertEqual(self.cli_json("status")["last_seq"], seq + 1)

    def test_archiver_on_a_disk_that_really_fills(self):
        """No reserve: RocksDB's own writes fail with ENOSPC (the WAL grows
        past what it preallocated). Debian's RocksDB 7.8 aborted the process
        there, and again at the next write once space returned."""
        fs = self.mount_tmpfs("archfs", 200)
        arch, col = self.pair(arch_dir=os.path.join(fs, "data"),
                              arch_config={"disk_reserve": "0"})
        self.put_many(col, "before", 5)
        self.wait_caught_up(arch, col)
        ballast = self.fill(fs, 0)
        self.commit_big(col, "big", 25)  # 100 MiB: more than the WAL holds
        wait_until(lambda: self.arch_ns(arch)["refusals"] >= 1, 60, "a refusal")
        self.assertTrue(arch.is_running(), "the archiver died on a full disk")
        acked = self.cli_json("status", collector=col)["archivers"][0]["acked_seq"]
        self.assertLess(acked, self.cli_json("status", collector=col)["last_seq"])
        self.assertEqual(self.cli_ok("get", NS, "ACC", "F", "before2", collector=arch),
                         b"b" * 100)
        # Space back: the store that failed is closed and opened again at the
        # site's next connection (nothing aborts: not the next write, not
        # the close), and the site catches up by itself.
        os.unlink(ballast)
        self.wait_caught_up(arch, col)
        self.assertTrue(arch.is_running(), "the archiver died once space returned")
        self.assert_same(arch, col)
        arch.terminate()
        self.assertEqual(arch.proc.returncode, 0)
        inspect = harness.run_inspect(os.path.join(fs, "data", "ns", NS))
        self.assertEqual(inspect["gaps"] + inspect["bad_records"], 0)

    def test_archiver_started_on_a_full_disk_resumes_by_itself(self):
        fs = self.mount_tmpfs("archfs", 200)
        arch, col = self.pair(arch_dir=os.path.join(fs, "data"),
                              arch_config={"disk_reserve": "0"})
        self.put_many(col, "before", 5)
        self.wait_caught_up(arch, col)
        arch.terminate()
        ballast = self.fill(fs, 0)
        self.put_many(col, "while-down", 5)
        arch.start()  # starts and answers status, full disk or not
        self.assertIsNotNone(self.arch_ns(arch))
        self.assertTrue(arch.is_running())
        os.unlink(ballast)
        self.wait_caught_up(arch, col)
        self.assert_same(arch, col)

    def test_data_dir_deleted_under_running_daemons(self):
        arch, col = self.pair()
        self.put_many(col, "before", 5)
        self.wait_caught_up(arch, col)
        acked = self.cli_json("status", collector=col)["archivers"][0]["acked_seq"]
        subprocess.run(["rm", "-rf", arch.data_dir], check=True)
        # The site's next commits reach the archiver, which must not apply
        # them into a deleted directory nor acknowledge them as durable.
        self.put_many(col, "after", 3)
        wait_until(lambda: self.arch_ns(arch)["refusals"] >= 1, 20, "a refusal")
        self.assertIn("gone", self.arch_ns(arch)["refusal"])
        self.assertEqual(self.cli_json("status", collector=col)["archivers"][0]["acked_seq"],
                         acked, "the archiver acknowledged writes into a deleted data dir")
        # A collector whose data dir goes refuses commits.
        subprocess.run(["rm", "-rf", col.data_dir], check=True)
        rc, _, err = self.cli("put", NS, "ACC", "F", "x", "y", collector=col)
        self.assertEqual(rc, 1)
        self.assertIn("gone", err.decode())
        self.assertTrue(arch.is_running() and col.is_running())

    def test_read_only_data_dir_refused_at_start(self):
        fs = self.mount_tmpfs("rofs", 16, read_only=True)
        for program in ("understudy-archiver", "understudy-collector"):
            with self.subTest(program):
                path = os.path.join(self.tmp, program + ".ini")
                with open(path, "w") as f:
                    f.write("listen = 127.0.0.1:%d\ndata_dir = %s\n"
                            % (harness.free_port(), fs))
                r = subprocess.run([harness.binary(program), "--config", path],
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                                   env=harness.child_env())
                self.assertEqual(r.returncode, 1, r.stderr)
                last = r.stderr.decode().strip().splitlines()[-1]
                self.assertTrue(last.startswith(program + ": "), last)
                self.assertIn(fs, last)


if __name__ == "__main__":
    harness.main()
