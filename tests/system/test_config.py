"""test_config.py - how understudy-collector reads (or refuses) its configuration.

  - no --config: embedded defaults, run in a temp cwd (listen 127.0.0.1:7441,
    namespace site-a, data under ./understudy-data/collector); skipped when
    port 7441 is taken on this machine;
  - a config setting every key the tests rely on is honoured;
  - a bad config file: exit 1 and exactly one stderr line naming FILE:LINE;
  - --help: exit 0.
"""

import os
import subprocess

import harness
from harness import SystemTest, binary, child_env, port_is_free, run_cli, wait_until

DEFAULT_PORT = 7441
EXIT_TIMEOUT_S = 20


class ConfigTest(SystemTest):

    def run_collector(self, *args, cwd=None):
        """Runs the collector to its exit (deadline EXIT_TIMEOUT_S) -> (rc, out, err)."""
        try:
            r = subprocess.run([binary("understudy-collector")] + list(args), cwd=cwd or self.tmp,
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=EXIT_TIMEOUT_S, env=child_env())
        except subprocess.TimeoutExpired:
            raise AssertionError("understudy-collector %s did not exit within %d s"
                                 % (" ".join(args), EXIT_TIMEOUT_S))
        return r.returncode, r.stdout, r.stderr

    def test_help(self):
        rc, out, _ = self.run_collector("--help")
        self.assertEqual(rc, 0)
        self.assertTrue(out.strip(), "--help printed nothing on stdout")

    def test_defaults_without_config(self):
        if not port_is_free(DEFAULT_PORT):
            self.skipTest("port %d is in use on this machine" % DEFAULT_PORT)
        cwd = os.path.join(self.tmp, "cwd")
        os.makedirs(cwd)
        log = open(os.path.join(self.tmp, "defaults.log"), "wb")
        proc = subprocess.Popen([binary("understudy-collector")], cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env())
        log.close()
        try:
            addr = "127.0.0.1:%d" % DEFAULT_PORT

            def answers():
                if proc.poll() is not None:
                    with open(os.path.join(self.tmp, "defaults.log"), "rb") as f:
                        raise AssertionError("collector without config exited %d: %r"
                                             % (proc.returncode, f.read()[-2000:]))
                return run_cli(addr, "status")[0] == 0
            wait_until(answers, harness.READY_TIMEOUT_S, "the default collector on %s" % addr)
            st = self.cli_json("status", addr=addr)
            self.assertEqual((st["node"], st["namespace"], st["role"]),
                             ("collector", "site-a", "primary"))
            self.assertTrue(os.path.isdir(os.path.join(cwd, "understudy-data", "collector")),
                            "no ./understudy-data/collector in the collector's cwd")
            proc.terminate()
            self.assertEqual(proc.wait(timeout=harness.STOP_TIMEOUT_S), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_example_configs_and_archiver_defaults(self):
        """conf/collector.ini and conf/archiver.ini start as they are, and the
        archiver runs with no config on its defaults (127.0.0.1:7440)."""
        conf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf")
        cases = [("understudy-collector", ["--config", os.path.join(conf, "collector.ini")],
                  7441, "collector"),
                 ("understudy-archiver", ["--config", os.path.join(conf, "archiver.ini")],
                  7440, "archiver"),
                 ("understudy-archiver", [], 7440, "archiver")]
        for program, args, port, node in cases:
            if not port_is_free(port):
                continue  # a demo may be running here; the other cases still run
            cwd = os.path.join(self.tmp, "cwd-%s-%d" % (program, len(args)))
            os.makedirs(cwd)
            proc = subprocess.Popen([binary(program)] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=child_env())
            try:
                addr = "127.0.0.1:%d" % port

                def answers():
                    if proc.poll() is not None:
                        raise AssertionError("%s %s exited %d" % (program, args, proc.returncode))
                    return run_cli(addr, "status")[0] == 0
                wait_until(answers, harness.READY_TIMEOUT_S, "%s on %s" % (program, addr))
                self.assertEqual(self.cli_json("status", addr=addr)["node"], node)
                proc.terminate()
                self.assertEqual(proc.wait(timeout=harness.STOP_TIMEOUT_S), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def test_every_key(self):
        c = self.start_collector(namespace="site-b.x_1", max_body="1KiB", rpc_threads="3",
                                 log_level="debug", max_lag="0", disk_reserve="64MiB, 3%")
        st = self.status()
        self.assertEqual(st["namespace"], "site-b.x_1")
        self.cli_ok("create-file", "site-b.x_1", "A", "F")
        self.cli_ok("put", "site-b.x_1", "A", "F", "k", b"x" * 1024)
        rc, _, err = self.cli("put", "site-b.x_1", "A", "F", "k", b"x" * 1025)
        self.assertEqual(rc, 1, "body over max_body = 1KiB: %r" % err)
        rc, _, err = self.cli("put", "site-a", "A", "F", "k", b"x")
        self.assertEqual(rc, 1, "the default namespace is not served: %r" % err)
        self.assertTrue(os.path.isdir(c.data_dir))
        # a relative data_dir is taken from the collector's cwd; comments and blank lines pass
        c.kill()
        c.config["data_dir"] = "rel-data"
        c.write_config()
        with open(c.config_path, "a") as f:
            f.write("\n# a comment\n   # an indented one\n\n")
        c.start()
        self.assertTrue(os.path.isdir(os.path.join(c.dir, "rel-data")))

    def test_bad_config_names_file_and_line(self):
        base = ["# a collector config", "namespace = site-a", "",
                "listen = 127.0.0.1:%d" % harness.free_port()]
        cases = [
            ("unknown key", "bogus_key = 1"),
            ("bad size", "max_body = 12XB"),
            ("size over the maximum", "max_body = 32MiB"),
            ("negative size", "max_body = -1KiB"),
            ("bad namespace name", "namespace = Site_A"),
            ("namespace too long", "namespace = " + "a" * 64),
            ("bad duration", "heartbeat_interval = 5 parsecs"),
            ("bad log level", "log_level = chatty"),
            ("bad thread count", "rpc_threads = many"),
            ("bad listen address", "listen = nohostport"),
            ("line without =", "just some words"),
            ("bad disk reserve", "disk_reserve = 5 parsecs"),
            ("disk reserve over 100 %", "disk_reserve = 101%"),
            ("two sizes as disk reserve", "disk_reserve = 1GiB, 2GiB"),
            ("three disk reserve terms", "disk_reserve = 1GiB, 5%, 6%"),
        ]
        for i, (what, line) in enumerate(cases):
            with self.subTest(what):
                path = os.path.join(self.tmp, "bad%d.ini" % i)
                lines = base + [line, "data_dir = %s" % os.path.join(self.tmp, "d%d" % i)]
                bad_line = len(base) + 1
                with open(path, "w") as f:
                    f.write("\n".join(lines) + "\n")
                rc, _, err = self.run_collector("--config", path)
                self.assertEqual(rc, 1, "%s: exit %d, stderr %r" % (what, rc, err))
                self.assert_one_line(err, what)
                self.assertIn("%s:%d" % (path, bad_line), err.decode("utf-8", "replace"),
                              "%s: stderr does not name %s:%d" % (what, path, bad_line))
        with self.subTest("missing config file"):
            path = os.path.join(self.tmp, "missing.ini")
            rc, _, err = self.run_collector("--config", path)
            self.assertEqual(rc, 1, "missing config: exit %d %r" % (rc, err))
            self.assert_one_line(err, "missing config")
            self.assertIn(path, err.decode("utf-8", "replace"))


    def test_port_in_use_is_one_reason(self):
        """A port in use: exit 1 and our own reason naming it, with no gRPC
        core dump (its multi-line internal error) on stderr."""
        import re
        import socket
        ours = re.compile(r"^(\d{4}-\d\d-\d\dT\S+Z (ERROR|WARN|INFO|DEBUG) "
                          r"(archiver|collector) |understudy-(archiver|collector): )")
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            for program in ("understudy-archiver", "understudy-collector"):
                with self.subTest(program):
                    path = os.path.join(self.tmp, program + ".ini")
                    with open(path, "w") as f:
                        f.write("listen = 127.0.0.1:%d\ndata_dir = %s\n"
                                % (port, os.path.join(self.tmp, program)))
                    r = subprocess.run([binary(program), "--config", path],
                                       stdin=subprocess.DEVNULL, capture_output=True,
                                       timeout=EXIT_TIMEOUT_S, env=child_env())
                    self.assertEqual(r.returncode, 1, r.stderr)
                    lines = r.stderr.decode("utf-8", "replace").strip().splitlines()
                    for line in lines:
                        self.assertRegex(line, ours, "a line not of ours on stderr")
                    self.assertIn("%d" % port, lines[-1])
                    self.assertIn("in use", lines[-1])


if __name__ == "__main__":
    harness.main()
