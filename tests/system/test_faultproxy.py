"""test_faultproxy.py - understudy-faultproxy, the fault-injecting TCP proxy.

The proxy sits between a Python echo (or sink) server on loopback and Python
clients. Checked:
  - pass mode relays 10 MB exactly both ways (with two more connections at the
    same time), passes EOF on, and `stats` counts the bytes exactly;
  - chaos mode with a fixed seed breaks every connection (the client sees EOF or
    a reset) and never corrupts or reorders what does arrive: the clients send a
    counter stream and every byte received must be the expected next one;
  - chaos is reproducible: the same seed gives the same faults at the same byte
    positions, and a clean cut delivers exactly the bytes relayed before it;
  - mode pass/chaos switch live connections; block/unblock; cut all (clean EOF);
    reset all (RST); stall all MS holds data for at least MS; a dead target;
  - bad arguments: exit 1 (bad value) or 2 (usage) with one stderr line;
    SIGTERM and SIGINT exit 0 and remove the control socket.
Waits poll a condition with a deadline; the only timing assertion is a lower
bound (a stall of 400 ms delays an echo by at least 300 ms).
"""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import harness
from harness import SystemTest, binary, child_env, wait_until

PROG = "understudy-faultproxy"
START_TIMEOUT_S = 20.0
IO_TIMEOUT_S = 60.0      # one socket operation of a client or server
STOP_TIMEOUT_S = 15.0
MB = 1024 * 1024


def counter_stream(n_bytes):
    """n_bytes of 8-byte big-endian counters 0, 1, 2, ...: a byte out of place
    or a byte lost in the middle shows as a mismatch."""
    n = n_bytes // 8 + 1
    return struct.pack(">%dQ" % n, *range(n))[:n_bytes]


class EchoServer:
    """Echoes every connection's bytes back; on EOF shuts its write side."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.is_stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(IO_TIMEOUT_S)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    break
                conn.sendall(data)
        except OSError:
            pass  # the proxy cut or reset us: expected in chaos
        finally:
            conn.close()

    def close(self):
        self.sock.close()


class SinkServer:
    """Reads every connection to its end; keeps what each received, in
    accept order, and whether it ended with EOF (True) or an error."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.received = []   # bytearray per connection
        self.ended = []      # None while open, then "eof" or "error"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                i = len(self.received)
                self.received.append(bytearray())
                self.ended.append(None)
            threading.Thread(target=self._serve, args=(conn, i), daemon=True).start()

    def _serve(self, conn, i):
        conn.settimeout(IO_TIMEOUT_S)
        how = "error"
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    how = "eof"
                    break
                with self.lock:
                    self.received[i] += data
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.ended[i] = how

    def n_ended(self):
        with self.lock:
            return sum(1 for e in self.ended if e is not None)

    def close(self):
        self.sock.close()


class Proxy:
    """One understudy-faultproxy process on an ephemeral port, with a control
    socket; its stderr goes to a file in the test's dir."""

    def __init__(self, tmp, n, target_port, *args):
        self.log_path = os.path.join(tmp, "faultproxy%d.log" % n)
        self.control_path = os.path.join(tmp, "fp%d.sock" % n)
        argv = [binary(PROG), "--listen", "127.0.0.1:0", "--target",
                "127.0.0.1:%d" % target_port, "--control", self.control_path] + list(args)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=child_env())
        self.port = wait_until(self._listening_port, START_TIMEOUT_S,
                               "%s to log event=listening" % PROG)
        self.addr = ("127.0.0.1", self.port)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _listening_port(self):
        m = re.search(r"event=listening .*?\bport=(\d+)", self.log_text())
        if m:
            return int(m.group(1))
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s before listening\n%s"
                                 % (PROG, self.proc.returncode, self.log_text()))
        return None

    def command(self, line):
        """Sends one command line, returns the answer line (without newline)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(IO_TIMEOUT_S)
            s.connect(self.control_path)
            s.sendall(line.encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                data = s.recv(4096)
                if not data:
                    break
                answer += data
        return answer.decode().rstrip("\n")

    def ok(self, line):
        answer = self.command(line)
        if answer != "ok":
            raise AssertionError("control %r answered %r" % (line, answer))

    def stats(self):
        answer = self.command("stats")
        try:
            return json.loads(answer)
        except ValueError:
            raise AssertionError("stats answered %r, not JSON" % answer)

    def wait_stats(self, predicate, what, timeout_s=IO_TIMEOUT_S):
        """Polls stats until predicate(stats) holds; returns those stats."""
        return wait_until(lambda: (lambda s: s if predicate(s) else None)(self.stats()),
                          timeout_s, what)

    def chaos_events(self):
        """(event, conn, after_bytes, extra) of every chaos decision, in order:
        the proxy's record of what its seed made it do."""
        out = []
        for line in self.log_text().splitlines():
            m = re.search(r"event=(cut|reset|stall) conn=(\d+) (.*)", line)
            if not m or "reason=chaos" not in m.group(3):
                continue
            after = int(re.search(r"after_bytes=(\d+)", line).group(1))
            dirm = re.search(r"dir=(\S+) ms=(\d+)", line)
            out.append((m.group(1), int(m.group(2)), after, dirm.groups() if dirm else None))
        return out

    def terminate(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s did not exit within %.0f s of signal %d\n%s"
                                 % (PROG, STOP_TIMEOUT_S, sig, self.log_text()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def connect(addr):
    s = socket.create_connection(addr, timeout=IO_TIMEOUT_S)
    s.settimeout(IO_TIMEOUT_S)
    return s


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        data = s.recv(n - len(out))
        if not data:
            raise AssertionError("EOF after %d of %d bytes" % (len(out), n))
        out += data
    return bytes(out)


def recv_end(s):
    """Reads until the connection ends: ("eof" | "reset", bytes received)."""
    out = bytearray()
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return "eof", bytes(out)
            out += data
    except ConnectionResetError:
        return "reset", bytes(out)


def echo_round_trip(s, payload):
    s.sendall(payload)
    return recv_exact(s, len(payload))


class Transfer:
    """A client sending data (a thread) while reading the echo (another) until
    the connection ends; send errors end the sending quietly. With window, the
    sender keeps at most that many bytes unechoed, so that both directions
    carry about as much (without it, the upstream floods first)."""

    CHUNK = 16384

    def __init__(self, addr, data, shut_wr=True, window=None):
        self.sock = connect(addr)
        self.data = data
        self.shut_wr = shut_wr
        self.window = window
        self.cond = threading.Condition()
        self.n_received = 0
        self.is_done = False
        self.result = None       # (how, received bytes)
        self.error = None
        self.sender = threading.Thread(target=self._send, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)

    def start(self):
        self.sender.start()
        self.reader.start()
        return self

    def _send(self):
        try:
            if self.window is None:
                self.sock.sendall(self.data)
            else:
                for off in range(0, len(self.data), self.CHUNK):
                    with self.cond:
                        if not self.cond.wait_for(
                                lambda: self.is_done or self.n_received >= off - self.window,
                                IO_TIMEOUT_S) or self.is_done:
                            return
                    self.sock.sendall(self.data[off:off + self.CHUNK])
            if self.shut_wr:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # broken by the proxy: the reader tells how

    def _read(self):
        out = bytearray()
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    self.result = ("reset", bytes(out))
                    return
                if not data:
                    self.result = ("eof", bytes(out))
                    return
                out += data
                with self.cond:
                    self.n_received = len(out)
                    self.cond.notify_all()
        except Exception as e:  # a timeout is a failure of the test
            self.error = e
        finally:
            with self.cond:
                self.is_done = True
                self.cond.notify_all()

    def join(self, timeout_s=IO_TIMEOUT_S + 10):
        self.reader.join(timeout_s)
        self.sender.join(timeout_s)
        self.sock.close()
        if self.reader.is_alive() or self.sender.is_alive():
            raise AssertionError("a transfer did not end")
        if self.error:
            raise AssertionError("transfer failed: %r" % (self.error,))
        return self.result


class FaultProxyTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proxies = []
        self.servers = []

    def tearDown(self):
        failed = self._has_failed()
        for p in self.proxies:
            p.kill()
        for s in self.servers:
            s.close()
        if failed:
            for p in self.proxies:
                lines = p.log_text().splitlines()
                harness.sys.stderr.write("---- %s (last 40 lines)\n%s\n"
                                         % (p.log_path, "\n".join(lines[-40:])))
        super().tearDown()

    def echo(self):
        s = EchoServer()
        self.servers.append(s)
        return s

    def sink(self):
        s = SinkServer()
        self.servers.append(s)
        return s

    def proxy(self, target_port, *args):
        p = Proxy(self.tmp, len(self.proxies), target_port, *args)
        self.proxies.append(p)
        return p

    def assert_prefix(self, received, sent, what):
        if received != sent[:len(received)]:
            i = next(i for i in range(len(received)) if received[i] != sent[i])
            self.fail("%s: byte %d of %d received differs from what was sent"
                      % (what, i, len(received)))

    # ---- pass mode

    def test_pass_relays_exactly_both_ways(self):
        server = self.echo()
        p = self.proxy(server.port, "--mode", "pass")
        big = self.rng.randbytes(10 * MB)
        small = [self.rng.randbytes(MB), counter_stream(MB)]
        transfers = [Transfer(p.addr, d).start() for d in [big] + small]
        for t, data in zip(transfers, [big] + small):
            how, got = t.join()
            self.assertEqual(how, "eof")
            self.assertEqual(len(got), len(data))
            self.assertTrue(got == data, "echo through the proxy returned other bytes")
        total = len(big) + sum(len(d) for d in small)
        st = p.wait_stats(lambda s: s["active"] == 0, "every connection to close")
        self.assertEqual(st["accepted"], 3)
        self.assertEqual(st["bytes_to_target"], total)
        self.assertEqual(st["bytes_to_client"], total)
        for key in ("cuts", "resets", "stalls", "refused", "connect_failures"):
            self.assertEqual(st[key], 0, key)
        self.assertEqual(st["mode"], "pass")
        self.assertIs(st["blocked"], False)

    def test_stats_shape(self):
        server = self.echo()
        p = self.proxy(server.port, "--mode", "chaos", "--seed", "99")
        st = p.stats()
        self.assertEqual(set(st), {"mode", "blocked", "accepted", "active", "refused",
                                   "connect_failures", "bytes_to_target", "bytes_to_client",
                                   "cuts", "resets", "stalls", "seed"})
        self.assertEqual(st["mode"], "chaos")
        self.assertEqual(st["seed"], 99)
        for key in ("accepted", "active", "bytes_to_target", "cuts", "resets", "stalls"):
            self.assertEqual(st[key], 0, key)
        # one connection open: counted as accepted and active
        with connect(p.addr) as s:
            self.assertEqual(echo_round_trip(s, b"hello"), b"hello")
            st = p.stats()
            self.assertEqual((st["accepted"], st["active"]), (1, 1))
            self.assertEqual((st["bytes_to_target"], st["bytes_to_client"]), (5, 5))
        p.wait_stats(lambda s: s["active"] == 0, "the connection to close")
        # every command answers one line; bad ones say why
        self.assertTrue(p.command("frobnicate").startswith("error unknown command"))
        self.assertTrue(p.command("stall all soon").startswith("error "))
        self.assertTrue(p.command("mode sideways").startswith("error "))
        self.assertTrue(p.command("").startswith("error "))

    # ---- chaos

    def test_chaos_breaks_connections_never_bytes(self):
        server = self.echo()
        n = 12
        p = self.proxy(server.port, "--mode", "chaos", "--seed", "42",
                       "--cut-after-bytes", "50000-400000", "--stall-ms", "5-60")
        stream = counter_stream(4 * MB)
        # half flood upstream, half keep 32 KiB in flight so that the echo
        # carries as much: cuts then land in both directions' streams
        transfers = [Transfer(p.addr, stream, shut_wr=False,
                              window=None if i % 2 else 32768).start() for i in range(n)]
        hows = []
        n_received = 0
        for i, t in enumerate(transfers):
            how, got = t.join()
            hows.append(how)
            n_received += len(got)
            self.assertIn(how, ("eof", "reset"))
            self.assertLess(len(got), len(stream), "connection %d was never broken" % i)
            self.assert_prefix(got, stream, "connection %d" % i)
        # the check above had bytes to check
        self.assertGreater(n_received, 200000)
        st = p.wait_stats(lambda s: s["active"] == 0, "every connection to end")
        self.assertGreaterEqual(st["bytes_to_client"], n_received)
        self.assertEqual(st["accepted"], n)
        self.assertEqual(st["cuts"] + st["resets"], n)
        self.assertGreater(st["cuts"], 0)
        self.assertGreater(st["resets"], 0)
        self.assertGreater(st["stalls"], 0)
        self.assertIn("reset", hows)

    def run_sink_chaos(self, seed, n=6):
        """n connections one after another through a chaos proxy to a sink,
        each sending a 1 MB counter stream; returns (proxy, sink)."""
        sink = self.sink()
        p = self.proxy(sink.port, "--mode", "chaos", "--seed", str(seed),
                       "--cut-after-bytes", "20000-200000", "--stall-ms", "1-5")
        stream = counter_stream(MB)
        for i in range(n):
            with connect(p.addr) as s:
                try:
                    s.sendall(stream)
                except OSError:
                    pass  # the proxy broke it
            wait_until(lambda: sink.n_ended() == i + 1, IO_TIMEOUT_S,
                       "the sink to see connection %d end" % i)
        p.wait_stats(lambda s: s["active"] == 0, "every connection to end")
        with sink.lock:
            for i, got in enumerate(sink.received):
                self.assert_prefix(bytes(got), stream, "sink connection %d" % i)
        return p, sink

    def test_chaos_is_reproducible(self):
        p1, sink1 = self.run_sink_chaos(7)
        p2, sink2 = self.run_sink_chaos(7)
        p3, _ = self.run_sink_chaos(8)
        ev1, ev2, ev3 = p1.chaos_events(), p2.chaos_events(), p3.chaos_events()
        faults1 = [e for e in ev1 if e[0] != "stall"]
        self.assertEqual(len(faults1), 6, ev1)
        self.assertEqual(ev1, ev2, "same seed, other faults")
        self.assertNotEqual(ev1, ev3, "another seed, same faults")
        # a clean cut delivers exactly the bytes relayed before it, then EOF
        n_cuts = 0
        for kind, conn, after, _ in faults1:
            if kind != "cut":
                continue
            n_cuts += 1
            for sink in (sink1, sink2):
                self.assertEqual(len(sink.received[conn - 1]), after)
                self.assertEqual(sink.ended[conn - 1], "eof")
        self.assertGreater(n_cuts, 0, "seed 7 drew no cut: pick another seed")

    def test_mode_switch_applies_to_open_connections(self):
        server = self.echo()
        p = self.proxy(server.port, "--mode", "pass", "--seed", "3",
                       "--cut-after-bytes", "10000-20000", "--stall-ms", "0")
        stream = counter_stream(4 * MB)
        with connect(p.addr) as s:
            got = echo_round_trip(s, stream[:100000])
            self.assertEqual(got, stream[:100000])
            p.ok("mode chaos")
            t = threading.Thread(target=lambda: _send_quietly(s, stream[100000:]), daemon=True)
            t.start()
            how, rest = recv_end(s)
            t.join(IO_TIMEOUT_S)
            self.assertIn(how, ("eof", "reset"))
            self.assertLessEqual(len(rest), 20000)
            self.assert_prefix(got + rest, stream, "connection after mode chaos")
        st = p.wait_stats(lambda s: s["active"] == 0, "the connection to end")
        self.assertEqual(st["cuts"] + st["resets"], 1)
        p.ok("mode pass")
        with connect(p.addr) as s:
            self.assertEqual(echo_round_trip(s, stream[:MB]), stream[:MB])

    # ---- control commands

    def test_block_and_unblock(self):
        server = self.echo()
        p = self.proxy(server.port, "--mode", "pass")
        old = connect(p.addr)
        self.assertEqual(echo_round_trip(old, b"before"), b"before")
        p.ok("block")
        self.assertEqual(recv_end(old), ("eof", b""), "an open connection outlived block")
        old.close()
        for _ in range(3):
            try:
                with connect(p.addr) as s:
                    s.sendall(b"x")
                    how, got = recv_end(s)
                    self.assertEqual(got, b"")
            except (ConnectionResetError, BrokenPipeError):
                pass  # refused even sooner: the same outcome
        st = p.stats()
        self.assertIs(st["blocked"], True)
        self.assertEqual(st["refused"], 3)
        self.assertEqual(st["active"], 0)
        p.ok("unblock")
        with connect(p.addr) as s:
            self.assertEqual(echo_round_trip(s, b"after"), b"after")
        self.assertIs(p.stats()["blocked"], False)

    def test_cut_all_and_reset_all(self):
        server = self.echo()
        p = self.proxy(server.port, "--mode", "pass")
        socks = [connect(p.addr) for _ in range(3)]
        for i, s in enumerate(socks):
            self.assertEqual(echo_round_trip(s, b"cut%d" % i), b"cut%d" % i)
        p.ok("cut all")
        for s in socks:
            self.assertEqual(recv_end(s), ("eof", b""), "cut all: not a clean EOF")
            s.close()
        st = p.wait_stats(lambda s: s["active"] == 0, "cut connections to go")
        self.assertEqual((st["cuts"], st["resets"]), (3, 0))

        socks = [connect(p.addr) for _ in range(2)]
        for s in socks:
            self.assertEqual(echo_round_trip(s, b"reset"), b"reset")
        p.ok("reset all")
        for s in socks:
            self.assertEqual(recv_end(s), ("reset", b""), "reset all: not a reset")
            s.close()
        st = p.wait_stats(lambda s: s["active"] == 0, "reset connections to go")
        self.assertEqual((st["cuts"], st["resets"]), (3, 2))

    def test_stall_all_holds_data(self):
        server = self.echo()
        p = self.proxy(server.port, "--mode", "pass")
        with connect(p.addr) as s:
            self.assertEqual(echo_round_trip(s, b"warm"), b"warm")
            p.ok("stall all 400")
            start = time.monotonic()
            self.assertEqual(echo_round_trip(s, b"held"), b"held")
            self.assertGreaterEqual(time.monotonic() - start, 0.3,
                                    "data crossed a stalled connection")
            self.assertEqual(echo_round_trip(s, b"free"), b"free")
        self.assertEqual(p.stats()["stalls"], 1)

    def test_dead_target(self):
        port = harness.free_port()
        p = self.proxy(port, "--mode", "pass")
        with connect(p.addr) as s:
            self.assertEqual(recv_end(s)[1], b"")
        st = p.wait_stats(lambda s: s["connect_failures"] == 1 and s["active"] == 0,
                          "the failed connect to be counted")
        self.assertEqual(st["accepted"], 1)

    # ---- process

    def run_bad(self, *args):
        r = subprocess.run([binary(PROG)] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=STOP_TIMEOUT_S, env=child_env())
        return r.returncode, r.stdout, r.stderr

    def test_bad_arguments(self):
        ok = ["--listen", "127.0.0.1:0", "--target", "127.0.0.1:9"]
        bad_values = [  # exit 1
            ["--listen", "127.0.0.1", "--target", "127.0.0.1:9"],
            ["--listen", "127.0.0.1:70000", "--target", "127.0.0.1:9"],
            ["--listen", "127.0.0.1:0", "--target", "127.0.0.1:0"],
            ["--listen", "127.0.0.1:0", "--target", "127.0.0.1:x"],
            ["--listen", "127.0.0.1:0", "--target", "no-such-host.invalid:80"],
            ok + ["--stall-ms", "500-10"],
            ok + ["--stall-ms", "a-b"],
            ok + ["--stall-ms", "-5"],
            ok + ["--cut-after-bytes", "10-"],
            ok + ["--mode", "sideways"],
            ok + ["--seed", "-1"],
            ok + ["--control", "x" * 200],
        ]
        usage = [  # exit 2
            ok + ["--frobnicate"],
            ok + ["extra"],
            ["--listen", "127.0.0.1:0"],
            ok + ["--seed"],
        ]
        for args, want in [(a, 1) for a in bad_values] + [(a, 2) for a in usage]:
            rc, out, err = self.run_bad(*args)
            self.assertEqual(rc, want, "%s: exit %d, stderr %r" % (args, rc, err))
            self.assert_one_line(err, " ".join(args))
            self.assertTrue(err.startswith(PROG.encode() + b": "), err)
            self.assertEqual(out, b"")
        rc, out, err = self.run_bad("--help")
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith(b"usage: " + PROG.encode()))
        # a port in use: cannot start
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            rc, _, err = self.run_bad("--listen", "127.0.0.1:%d" % taken.getsockname()[1],
                                      "--target", "127.0.0.1:9")
            self.assertEqual(rc, 1)
            self.assert_one_line(err, "port in use")

    def test_sigterm_and_sigint_exit_0(self):
        server = self.echo()
        for sig in (signal.SIGTERM, signal.SIGINT):
            p = self.proxy(server.port, "--mode", "pass")
            with connect(p.addr) as s:
                self.assertEqual(echo_round_trip(s, b"bye"), b"bye")
                self.assertEqual(p.terminate(sig), 0, p.log_text())
                self.assertEqual(recv_end(s), ("eof", b""))
            self.assertFalse(os.path.exists(p.control_path), "control socket left behind")


def _send_quietly(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


if __name__ == "__main__":
    harness.main()
