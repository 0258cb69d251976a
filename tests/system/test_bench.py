"""test_bench.py - understudy-bench against a real collector.

A short run must report numbers that agree with what the store holds (every
measured write is there: data_items >= commits x ops), refuse bad flags with
exit 2, and exit 1 with one line when the collector is unreachable or a commit
fails.
"""

import json
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


if __name__ == "__main__":
    harness.main()
