"""test_replication_faults.py - the replication stream under faults.

Three sites (site-a, site-b, site-c), each an understudy-collector with
`archiver = ADDR`, stream into one understudy-archiver while they load: the
`understudy load` CLI in batches, and single commits through python3-grpcio
Store/Commit. Faults:
  - test_three_sites_archiver_killed: the archiver is killed with SIGKILL at
    random moments (4 times) and restarted;
  - test_collector_killed_mid_stream_three_sites: the collectors are killed
    with SIGKILL one at a time (6 times) and restarted, the archiver alive;
  - test_fault_proxy_chaos: every site reaches the archiver through its own
    understudy-faultproxy in chaos mode (fixed seeds; stalls 20-200 ms, a cut
    or reset after 16 KiB - 1 MiB), plus `cut all`, `reset all`, and `block`
    until a reconnect was refused, then `unblock`; at the end `mode pass`.
Every test ends with a check of DATA, never log text:
  - each site holds exactly what its acknowledged gRPC commits say (a model
    kept by the test; a commit cut off by a kill is looked up on the site
    after the restart), and every acknowledged load's items;
  - the archiver holds exactly the site's items, bodies, deletes and files
    (Scan/ListFiles on both ends);
  - with both daemons stopped, understudy-inspect finds the archiver's journal
    of each namespace contiguous from seq 1, no bad record, one entry per seq,
    and ending at the position, which equals the site's last seq.
The gRPC commits are built so that applying one twice, or out of order, would
change the data: each rewrites a "counter" item with its own number and the
previous commit's seq, writes and deletes rotating items (deleted items come
back later), and cycles a file through clear-file, delete-file, create-file.
Waits poll conditions with deadlines; random pauses only pick kill moments.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import harness
from harness import (Proto, SystemTest, binary, child_env, dump_namespace, run_cli,
                     run_inspect, tsv_escape, wait_until)

SITES = ("site-a", "site-b", "site-c")
ACC = "APP"
CATCH_UP_S = 90          # every site caught up on the archiver after the faults
RPC_TIMEOUT_S = 30       # one gRPC call of a driver
UP_TIMEOUT_S = 60        # a driver waits this long for its collector to come back
JOIN_TIMEOUT_S = 150     # a driver thread ends (a CLI load can take CLI_TIMEOUT_S)
PROXY_START_S = 20
PROXY_IO_S = 30


def _op_kinds(proto):
    values = proto.Op.DESCRIPTOR.enum_types_by_name["Kind"].values_by_name
    return {name: values[name].number for name in
            ("WRITE", "DELETE", "CREATE_FILE", "CLEAR_FILE", "DELETE_FILE")}


def apply_ops(model, ops):
    """Applies ops (kind, file, is_dict, id, body) to a model
    {(account, file): {"data": {id: body}, "dict": {id: body}}}."""
    for kind, file, is_dict, ident, body in ops:
        key = (ACC, file)
        section = "dict" if is_dict else "data"
        if kind == "WRITE":
            model[key][section][ident] = body
        elif kind == "DELETE":
            model[key][section].pop(ident, None)
        elif kind == "CREATE_FILE":
            assert key not in model
            model[key] = {"data": {}, "dict": {}}
        elif kind == "CLEAR_FILE":
            model[key][section] = {}
        elif kind == "DELETE_FILE":
            del model[key]
        else:
            raise AssertionError("unknown op kind %r" % kind)


def describe_diff(want, got, limit=5):
    """A short account of how two {id: body} dicts differ ('' when equal)."""
    if want == got:
        return ""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    other = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    parts = []
    if missing:
        parts.append("%d missing %r" % (len(missing), missing[:limit]))
    if extra:
        parts.append("%d extra %r" % (len(extra), extra[:limit]))
    if other:
        parts.append("%d other bodies %r" % (len(other), [(k, want[k], got[k])
                                                           for k in other[:limit]]))
    return "; ".join(parts)


class SiteDriver:
    """Loads one site from two threads: `understudy load` rounds of fresh ids
    into APP/LOAD, and single gRPC commits to APP/CNT and APP/CYC, applied to
    self.model when acknowledged.

    With tolerate_failures (the test kills the collector), a failed call waits
    for self.up (cleared by the test while the collector is down) and, for a
    commit, reads the counter item to learn whether it was applied. Otherwise
    every failure is recorded in self.errors and ends the thread."""

    def __init__(self, test, col, ns, seed, load_items=400, load_batch=40, body_bytes=48,
                 tolerate_failures=False):
        self.test = test
        self.proto = test.proto
        self.kinds = test.op_kinds
        self.col = col
        self.ns = ns
        self.seed = seed
        self.rng = random.Random(seed)
        self.load_rng = random.Random(seed + 1)
        self.load_items = load_items
        self.load_batch = load_batch
        self.body_bytes = body_bytes
        self.tolerate_failures = tolerate_failures
        self.model = {(ACC, "CNT"): {"data": {}, "dict": {}}}
        self.lock = threading.Lock()
        self.n = 0                  # commits applied (per the acks and look-ups)
        self.n_acked = 0
        self.n_failed = 0           # commits that failed (then looked up)
        self.n_failed_applied = 0   # ... and were found applied
        self.prev_seq = 0           # last_seq of the last acknowledged commit
        self.loads_ok = []          # {id: body} of each acknowledged load
        self.loads_failed = []      # {id: body} of each load that failed
        self.errors = []
        self.up = threading.Event()
        self.up.set()
        self.stop = threading.Event()
        self.threads = []

    # ---- the gRPC commits

    def next_ops(self, n):
        """The ops of commit number n: what they do depends on n and on the
        model (CYC exists or not), so that a commit applied twice or out of
        order leaves other data."""
        r = self.rng
        ops = [("WRITE", "CNT", False, b"counter", b"n=%d\xfeprev_seq=%d" % (n, self.prev_seq)),
               ("WRITE", "CNT", False, b"h%02d" % (n % 23),
                b"%d\xfd%s" % (n, r.randbytes(6).hex().encode())),
               ("DELETE", "CNT", False, b"h%02d" % ((n * 7 + 5) % 23), b"")]
        if n % 4 == 0:
            ops.append(("WRITE", "CNT", True, b"d%d" % (n % 5), b"dict\xfc%d" % n))
        if n % 9 == 0:
            ops.append(("DELETE", "CNT", True, b"d%d" % ((n // 9) % 5), b""))
        phase = n % 12
        if (ACC, "CYC") not in self.model:
            ops += [("CREATE_FILE", "CYC", False, b"", b""),
                    ("WRITE", "CYC", False, b"born", b"%d" % n)]
        elif phase == 0:
            ops.append(("DELETE_FILE", "CYC", False, b"", b""))
        elif phase == 10:
            ops += [("DELETE_FILE", "CYC", False, b"", b""),
                    ("CREATE_FILE", "CYC", False, b"", b""),
                    ("WRITE", "CYC", False, b"reborn", b"%d" % n)]
        elif phase in (3, 8):
            ops += [("CLEAR_FILE", "CYC", False, b"", b""),
                    ("WRITE", "CYC", False, b"after-clear", b"%d" % n)]
        elif phase == 6:
            ops += [("CLEAR_FILE", "CYC", True, b"", b""),
                    ("WRITE", "CYC", True, b"dict-after-clear", b"%d" % n)]
        else:
            ops.append(("WRITE", "CYC", phase % 2 == 1, b"c%d" % (n % 5), b"%d" % n))
        return ops

    def to_proto(self, ops):
        out = []
        for kind, file, is_dict, ident, body in ops:
            op = self.proto.Op(kind=self.kinds[kind], account=ACC, file=file, dict=is_dict)
            if kind in ("WRITE", "DELETE"):
                op.id = ident
            if kind == "WRITE":
                op.body = body
            if kind == "CREATE_FILE":
                op.logged = True
            out.append(op)
        return self.proto.CommitRequest(namespace=self.ns, ops=out)

    def _stub(self):
        channel = self.proto.channel(self.col.addr)
        return channel, self.proto.stub(channel)

    def _was_applied(self, n):
        """After a failed commit n: waits for the collector, then reads the
        counter item. True/False, or None (recorded in errors) when it cannot."""
        import grpc
        deadline = time.monotonic() + UP_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.up.wait(max(0.0, deadline - time.monotonic())):
                break
            channel, stub = self._stub()
            try:
                body = stub.Read(self.proto.ReadRequest(namespace=self.ns, account=ACC,
                                                        file="CNT", id=b"counter"),
                                 timeout=RPC_TIMEOUT_S).body
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    body = b""
                else:
                    time.sleep(0.05)  # the collector went down again: poll
                    continue
            finally:
                channel.close()
            if body.startswith(b"n=%d\xfe" % n):
                return True
            if n == 1 and body == b"" or body.startswith(b"n=%d\xfe" % (n - 1)):
                return False
            self.errors.append("%s: after failed commit %d the counter reads %r"
                               % (self.ns, n, body))
            return None
        self.errors.append("%s: the collector did not come back within %d s after a failed "
                           "commit %d" % (self.ns, UP_TIMEOUT_S, n))
        return None

    def _commits(self):
        import grpc
        channel, stub = self._stub()
        try:
            while not self.stop.is_set():
                n = self.n + 1
                ops = self.next_ops(n)
                try:
                    resp = stub.Commit(self.to_proto(ops), timeout=RPC_TIMEOUT_S)
                except grpc.RpcError as e:
                    if not self.tolerate_failures:
                        self.errors.append("%s: commit %d failed: %s %s"
                                           % (self.ns, n, e.code(), e.details()))
                        return
                    channel.close()
                    with self.lock:
                        self.n_failed += 1
                    applied = self._was_applied(n)
                    if applied is None:
                        return
                    if applied:
                        with self.lock:
                            apply_ops(self.model, ops)
                            self.n = n
                            self.n_failed_applied += 1
                    channel, stub = self._stub()
                    continue
                if not (resp.first_seq > self.prev_seq and resp.last_seq >= resp.first_seq):
                    self.errors.append("%s: commit %d acknowledged seqs %d-%d after %d"
                                       % (self.ns, n, resp.first_seq, resp.last_seq,
                                          self.prev_seq))
                    return
                with self.lock:
                    apply_ops(self.model, ops)
                    self.n = n
                    self.n_acked += 1
                    self.prev_seq = resp.last_seq
        except Exception as e:  # a bug of the test: report it, do not hang
            self.errors.append("%s: commit thread: %r" % (self.ns, e))
        finally:
            channel.close()

    # ---- the CLI loads

    def _loads(self):
        rnd = 0
        try:
            while not self.stop.is_set():
                r = self.load_rng
                items = {b"L%04d-%05d" % (rnd, j):
                         b"r%d\xfej%d\xfd%s" % (rnd, j, r.randbytes(self.body_bytes).hex().encode())
                         for j in range(self.load_items)}
                tsv = "".join("%s\t%s\n" % (ident.decode(), tsv_escape(body))
                              for ident, body in items.items()).encode()
                rc, _, err = run_cli(self.col.addr, "load", self.ns, ACC, "LOAD",
                                     "--batch", str(self.load_batch), stdin=tsv)
                if rc == 0:
                    self.loads_ok.append(items)
                elif self.tolerate_failures:
                    self.loads_failed.append(items)
                    if not self.up.wait(UP_TIMEOUT_S):
                        self.errors.append("%s: the collector did not come back within %d s"
                                           % (self.ns, UP_TIMEOUT_S))
                        return
                else:
                    self.errors.append("%s: load round %d failed (%d): %r"
                                       % (self.ns, rnd, rc, err))
                    return
                rnd += 1
        except Exception as e:
            self.errors.append("%s: load thread: %r" % (self.ns, e))

    # ---- control

    def start(self):
        for fn in (self._commits, self._loads):
            t = threading.Thread(target=fn, daemon=True, name="%s-%s" % (self.ns, fn.__name__))
            t.start()
            self.threads.append(t)
        return self

    def progress(self):
        with self.lock:
            return self.n + len(self.loads_ok)

    def finish(self):
        """Stops both threads and waits for them; True when they ended."""
        self.stop.set()
        self.up.set()
        for t in self.threads:
            t.join(JOIN_TIMEOUT_S)
        return not any(t.is_alive() for t in self.threads)

    def summary(self):
        return ("%s: %d commits (%d acked, %d failed of which %d applied), loads %d ok %d failed"
                % (self.ns, self.n, self.n_acked, self.n_failed, self.n_failed_applied,
                   len(self.loads_ok), len(self.loads_failed)))


class FaultProxy:
    """One understudy-faultproxy in front of target_addr, with a control socket."""

    def __init__(self, tmp, name, target_addr, *args):
        self.name = name
        self.log_path = os.path.join(tmp, "%s.log" % name)
        self.control_path = os.path.join(tmp, "%s.sock" % name)
        argv = [binary("understudy-faultproxy"), "--listen", "127.0.0.1:0", "--target",
                target_addr, "--control", self.control_path] + list(args)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=child_env())
        self.port = wait_until(self._listening_port, PROXY_START_S,
                               "%s to log event=listening" % name)
        self.addr = "127.0.0.1:%d" % self.port

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
            raise AssertionError("faultproxy exited with %s before listening\n%s"
                                 % (self.proc.returncode, self.log_text()))
        return None

    def command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(PROXY_IO_S)
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
            raise AssertionError("%s: control %r answered %r" % (self.name, line, answer))

    def stats(self):
        answer = self.command("stats")
        try:
            return json.loads(answer)
        except ValueError:
            raise AssertionError("%s: stats answered %r" % (self.name, answer))

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()
        return "---- %s (last %d lines)\n%s" % (self.log_path, n, "\n".join(lines[-n:]))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ReplicationFaultsTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()
        self.op_kinds = _op_kinds(self.proto)
        self.drivers = []
        self.proxies = []

    def tearDown(self):
        for d in self.drivers:
            d.stop.set()
            d.up.set()
        failed = self._has_failed()
        for p in self.proxies:
            p.kill()
            if failed:
                sys.stderr.write(p.log_tail() + "\n")
        for d in self.drivers:
            for t in d.threads:
                t.join(5)
        super().tearDown()

    # ---- helpers

    def stub(self, daemon):
        return self.proto.stub(self.proto.channel(daemon.addr))

    def start_sites(self, arch_addrs, **driver_kw):
        """A collector per site streaming to arch_addrs[i], APP/CNT and
        APP/LOAD created; returns the drivers (not started)."""
        for i, ns in enumerate(SITES):
            col = self.start_collector(name=ns, namespace=ns, archiver=arch_addrs[i],
                                       heartbeat_interval="100ms")
            self.cli_ok("create-file", ns, ACC, "CNT", collector=col)
            self.cli_ok("create-file", ns, ACC, "LOAD", collector=col)
            self.drivers.append(SiteDriver(self, col, ns, self.seed * 7 + i, **driver_kw))
        return self.drivers

    def archiver_namespaces(self, arch):
        return {n["namespace"]: n for n in self.cli_json("status", collector=arch)["namespaces"]}

    def applied_total(self, arch):
        return sum(n["applied_seq"] for n in self.archiver_namespaces(arch).values())

    def wait_caught_up(self, arch):
        """Until the archiver has applied and synced every site's last seq,
        and each site saw it acknowledged."""
        def caught_up():
            mine = self.archiver_namespaces(arch)
            for d in self.drivers:
                site = self.cli_json("status", collector=d.col)
                n = mine.get(d.ns)
                if not (n and n["applied_seq"] == site["last_seq"]
                        and n["durable_seq"] == site["last_seq"]
                        and site["archivers"][0]["acked_seq"] == site["last_seq"]):
                    return False
            return True
        try:
            wait_until(caught_up, CATCH_UP_S, "the archiver to catch up with every site",
                       interval_s=0.1)
        except AssertionError as e:
            lines = [str(e)]
            mine = self.archiver_namespaces(arch)
            for d in self.drivers:
                site = self.cli_json("status", collector=d.col)
                lines.append("%s: site last_seq %d archivers %r; archiver %r"
                             % (d.ns, site["last_seq"], site["archivers"], mine.get(d.ns)))
            raise AssertionError("\n".join(lines))

    def run_load_until(self, predicate, what, timeout_s=60):
        """Waits for predicate() while the drivers run; fails early on a
        driver's error."""
        def check():
            for d in self.drivers:
                if d.errors:
                    raise AssertionError("driver error: %s" % d.errors)
            return predicate()
        return wait_until(check, timeout_s, what, interval_s=0.05)

    def finish_drivers(self):
        for d in self.drivers:
            self.assertTrue(d.finish(), "%s: a driver thread did not end" % d.ns)
        for d in self.drivers:
            self.assertEqual(d.errors, [], d.ns)
            sys.stderr.write("[%s] seed=%d %s\n" % (self._testMethodName, self.seed,
                                                    d.summary()))

    def check_data(self, arch, loads_must_all_pass):
        """Site == model, site == archiver for every site (both ends up)."""
        for d in self.drivers:
            site = dump_namespace(self.stub(d.col), self.proto, d.ns)
            archived = dump_namespace(self.stub(arch), self.proto, d.ns)
            where = "%s (seed %d)" % (d.ns, self.seed)
            # the site holds what its acknowledged commits say
            for f in ("CNT", "CYC"):
                key = (ACC, f)
                self.assertEqual(key in site, key in d.model,
                                 "%s: file %s exists on the site: %s, in the model: %s"
                                 % (where, f, key in site, key in d.model))
                if key in site:
                    for section in ("data", "dict"):
                        diff = describe_diff(d.model[key][section], site[key][section])
                        self.assertEqual(diff, "", "%s: site %s %s vs its acknowledged "
                                         "commits: %s" % (where, f, section, diff))
            # every acknowledged load is there whole; a failed one in part
            loaded = site[(ACC, "LOAD")]["data"]
            want = {}
            for items in d.loads_ok:
                want.update(items)
            diff = describe_diff(want, {k: v for k, v in loaded.items() if k in want})
            self.assertEqual(diff, "", "%s: acknowledged loads on the site: %s" % (where, diff))
            partial = {}
            for items in d.loads_failed:
                partial.update(items)
            for ident, body in loaded.items():
                if ident not in want:
                    self.assertEqual(body, partial.get(ident), "%s: LOAD item %r was never "
                                     "sent with that body" % (where, ident))
            if loads_must_all_pass:
                self.assertEqual(d.loads_failed, [], where)
            self.assertEqual(sorted(site), sorted([(ACC, "CNT"), (ACC, "LOAD")]
                                                  + ([(ACC, "CYC")] if (ACC, "CYC") in d.model
                                                     else [])), where)
            # the archiver holds exactly the site's data
            self.assertEqual(sorted(archived), sorted(site), "%s: files differ" % where)
            for key in site:
                for section in ("data", "dict"):
                    diff = describe_diff(site[key][section], archived[key][section])
                    self.assertEqual(diff, "", "%s: archiver's %s %s vs the site's: %s"
                                     % (where, key, section, diff))

    def check_journals(self, arch):
        """With every daemon stopped: the archiver's journal of each namespace
        runs 1..the site's last seq, one entry per seq, and is the position."""
        for d in self.drivers:
            self.assertEqual(d.col.terminate(), 0, "%s exit status" % d.ns)
        self.assertEqual(arch.terminate(), 0, "archiver exit status")
        for d in self.drivers:
            site = run_inspect(d.col.data_dir)
            info = run_inspect(os.path.join(arch.data_dir, "ns", d.ns))
            msg = "%s (seed %d): site %r archiver %r" % (d.ns, self.seed, site, info)
            self.assertEqual((site["gaps"], site["bad_records"]), (0, 0), msg)
            self.assertEqual((info["gaps"], info["bad_records"]), (0, 0), msg)
            self.assertEqual(info["first_seq"], 1, msg)
            self.assertEqual(info["last_seq"], site["last_seq"], msg)
            self.assertEqual(info["position_seq"], site["last_seq"], msg)
            self.assertEqual(info["entries"], site["last_seq"], msg)
            self.assertGreaterEqual(site["last_seq"], d.prev_seq, msg)

    # ---- tests

    def test_three_sites_archiver_killed(self):
        arch = self.start_archiver(name="archiver")
        arch.is_port_picked = False  # the sites know this port: never move it
        drivers = self.start_sites([arch.addr] * 3)
        for d in drivers:
            d.start()
        n_kills = 4
        for k in range(n_kills):
            before = self.applied_total(arch)
            self.run_load_until(lambda: self.applied_total(arch) > before + 50,
                                "the archiver to apply more (round %d)" % k)
            time.sleep(self.rng.uniform(0.05, 0.8))  # a random moment of the stream
            arch.kill()
            if self.rng.random() < 0.5:
                # stay down while the sites commit on
                progress = sum(d.progress() for d in drivers)
                self.run_load_until(lambda: sum(d.progress() for d in drivers) > progress + 20,
                                    "the sites to commit while the archiver is down")
            arch.start()
        progress = sum(d.progress() for d in drivers)
        self.run_load_until(lambda: sum(d.progress() for d in drivers) > progress + 20,
                            "the sites to commit after the last restart")
        self.finish_drivers()
        self.wait_caught_up(arch)
        self.check_data(arch, loads_must_all_pass=True)
        self.check_journals(arch)

    def test_collector_killed_mid_stream_three_sites(self):
        arch = self.start_archiver(name="archiver")
        drivers = self.start_sites([arch.addr] * 3, tolerate_failures=True)
        for d in drivers:
            d.start()
        n_kills = 6
        order = [drivers[i % 3] for i in range(n_kills)]
        self.rng.shuffle(order)
        for k, d in enumerate(order):
            ns = d.ns
            before = self.archiver_namespaces(arch).get(ns, {}).get("applied_seq", 0)
            progress = d.progress()
            self.run_load_until(
                lambda: (d.progress() > progress + 10 and
                         self.archiver_namespaces(arch).get(ns, {}).get("applied_seq", 0)
                         > before),
                "%s to commit and ship more (kill %d)" % (ns, k))
            time.sleep(self.rng.uniform(0.05, 0.6))  # a random moment of the stream
            d.up.clear()
            d.col.kill()
            d.col.start()
            d.up.set()
        for d in drivers:
            progress = d.progress()
            self.run_load_until(lambda: d.progress() > progress + 10,
                                "%s to commit after its last restart" % d.ns)
        self.finish_drivers()
        self.assertGreater(sum(d.n_failed + len(d.loads_failed) for d in drivers), 0,
                           "no kill interrupted a commit or a load")
        self.wait_caught_up(arch)
        self.check_data(arch, loads_must_all_pass=False)
        self.check_journals(arch)

    def test_hung_connection_is_dialled_again(self):
        """A connection that stays open but carries nothing (the proxy holds
        every byte, as a hung archiver or a black-holed route would): the
        site notices the silence after five heartbeat intervals (at least
        1 s), drops it and dials a new connection, long before TCP
        keepalive (10 s + 10 s) would. Commits made meanwhile reach the
        archiver through the new connection."""
        ns = SITES[0]
        arch = self.start_archiver(name="archiver")
        proxy = FaultProxy(self.tmp, "faultproxy-hung", arch.addr, "--mode", "pass")
        self.proxies.append(proxy)
        col = self.start_collector(name=ns, namespace=ns, archiver=proxy.addr,
                                   heartbeat_interval="100ms")
        self.cli_ok("create-file", ns, ACC, "CNT", collector=col)
        for i in range(20):
            self.cli_ok("put", ns, ACC, "CNT", "before-%d" % i, "b%d" % i, collector=col)

        def acked():
            site = self.cli_json("status", collector=col)
            return site["archivers"][0]["acked_seq"] == site["last_seq"]
        wait_until(acked, CATCH_UP_S, "the archiver to have the first commits", interval_s=0.05)
        accepted = proxy.stats()["accepted"]
        proxy.ok("stall all 600000")
        started = time.monotonic()
        for i in range(20):
            self.cli_ok("put", ns, ACC, "CNT", "during-%d" % i, "d%d" % i, collector=col)
        last_seq = self.last_seq(collector=col)

        def caught_up():
            n = self.archiver_namespaces(arch).get(ns)
            return n is not None and n["durable_seq"] == last_seq and acked()
        wait_until(caught_up, 8, "the site to dial again past the hung connection",
                   interval_s=0.05)
        sys.stderr.write("[%s] caught up %.2f s after the stall began\n"
                         % (self._testMethodName, time.monotonic() - started))
        self.assertGreater(proxy.stats()["accepted"], accepted, "no new connection was made")
        self.assertTrue(self.archiver_namespaces(arch)[ns]["connected"])
        want = sorted([b"before-%d" % i for i in range(20)] + [b"during-%d" % i for i in range(20)])
        self.assertEqual(self.list_ids(ns, ACC, "CNT", collector=arch), want)
        for ident, body in (("before-3", b"b3"), ("during-17", b"d17")):
            rc, out, _ = self.cli("get", ns, ACC, "CNT", ident, collector=arch)
            self.assertEqual((rc, out), (0, body))
        self.assertEqual(col.terminate(), 0, "collector exit status")
        self.assertEqual(arch.terminate(), 0, "archiver exit status")
        info = run_inspect(os.path.join(arch.data_dir, "ns", ns))
        self.assertEqual((info["gaps"], info["bad_records"], info["last_seq"]),
                         (0, 0, last_seq), info)

    def test_hung_site_shows_not_connected(self):
        """A site that stops speaking (its process stopped, its connection
        still open) shows as not connected on the archiver once silent for
        five of its heartbeat intervals (at least 1 s), and connected again
        when it speaks; an idle site's heartbeats keep it connected."""
        ns = SITES[0]
        arch = self.start_archiver(name="archiver")
        col = self.start_collector(name=ns, namespace=ns, archiver=arch.addr,
                                   heartbeat_interval="100ms")
        self.cli_ok("create-file", ns, ACC, "CNT", collector=col)
        self.cli_ok("put", ns, ACC, "CNT", "one", "1", collector=col)
        last_seq = self.last_seq(collector=col)

        def state():
            return self.archiver_namespaces(arch).get(ns)
        wait_until(lambda: state() and state()["connected"] and state()["durable_seq"] == last_seq,
                   CATCH_UP_S, "the archiver to have the site's commits", interval_s=0.05)
        # idle for longer than the silence limit: heartbeats keep it connected
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            n = state()
            self.assertTrue(n["connected"], n)
            self.assertLess(n["heartbeat_age_ms"], 1000, n)
            time.sleep(0.1)
        age_before = state()["heartbeat_age_ms"]
        col.signal(signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            wait_until(lambda: not state()["connected"], 10,
                       "the archiver to report the stopped site not connected", interval_s=0.05)
            waited = time.monotonic() - stopped
            n = state()
            self.assertGreaterEqual(n["heartbeat_age_ms"], 1000, n)
            # silent for 1 s since its last heartbeat, which came age_before
            # ms before the stop (the status call took some of that too)
            self.assertGreaterEqual(waited, 1.0 - age_before / 1000.0 - 0.25,
                                    "reported not connected too early (age before %d ms)"
                                    % age_before)
        finally:
            col.signal(signal.SIGCONT)
        wait_until(lambda: state()["connected"], 10,
                   "the archiver to report the site connected again", interval_s=0.05)
        self.cli_ok("put", ns, ACC, "CNT", "two", "2", collector=col)
        last_seq = self.last_seq(collector=col)
        wait_until(lambda: state()["durable_seq"] == last_seq, CATCH_UP_S,
                   "the archiver to have the commit made after the stop", interval_s=0.05)
        self.assertEqual(self.list_ids(ns, ACC, "CNT", collector=arch), [b"one", b"two"])

    def test_fault_proxy_chaos(self):
        arch = self.start_archiver(name="archiver")
        seeds = [1001, 1002, 1003]
        for i, ns in enumerate(SITES):
            self.proxies.append(FaultProxy(
                self.tmp, "faultproxy-%s" % ns, arch.addr, "--mode", "chaos",
                "--seed", str(seeds[i]), "--stall-ms", "20-200",
                "--cut-after-bytes", "16384-1048576"))
        drivers = self.start_sites([p.addr for p in self.proxies], body_bytes=160)
        for d in drivers:
            d.start()

        def faults():
            return sum(s["cuts"] + s["resets"] for s in (p.stats() for p in self.proxies))
        # chaos by itself breaks connections
        self.run_load_until(lambda: faults() >= 3, "chaos to break 3 connections",
                            timeout_s=90)
        chaos_stats = [p.stats() for p in self.proxies]
        # every connection at once, cleanly then abruptly
        for cmd in ("cut all", "reset all"):
            progress = sum(d.progress() for d in drivers)
            self.run_load_until(lambda: sum(d.progress() for d in drivers) > progress + 10,
                                "the sites to commit before %s" % cmd)
            time.sleep(self.rng.uniform(0.05, 0.5))
            for p in self.proxies:
                p.ok(cmd)
        # the archiver looks down until every site's reconnect was refused
        refused = [p.stats()["refused"] for p in self.proxies]
        for p in self.proxies:
            p.ok("block")
        self.run_load_until(lambda: all(p.stats()["refused"] > r
                                        for p, r in zip(self.proxies, refused)),
                            "each site to try again while blocked")
        progress = sum(d.progress() for d in drivers)
        self.run_load_until(lambda: sum(d.progress() for d in drivers) > progress + 20,
                            "the sites to commit while blocked")
        for p in self.proxies:
            p.ok("unblock")
        # chaos goes on for a while after unblock
        before = self.applied_total(arch)
        self.run_load_until(lambda: self.applied_total(arch) > before + 100,
                            "the archiver to apply more after unblock")
        self.finish_drivers()
        for p in self.proxies:
            p.ok("mode pass")
        self.wait_caught_up(arch)
        stats = [p.stats() for p in self.proxies]
        for p, c, s in zip(self.proxies, chaos_stats, stats):
            sys.stderr.write("[%s] %s chaos-only: cuts=%d resets=%d stalls=%d; final: %s\n"
                             % (self._testMethodName, p.name, c["cuts"], c["resets"],
                                c["stalls"], json.dumps(s, sort_keys=True)))
        self.assertGreater(sum(c["cuts"] + c["resets"] for c in chaos_stats), 0,
                           "chaos broke no connection")
        self.assertGreater(sum(c["stalls"] for c in chaos_stats), 0, "chaos stalled nothing")
        for s in stats:
            self.assertGreater(s["cuts"] + s["resets"], 0, s)
            self.assertGreater(s["refused"], 0, s)
        self.check_data(arch, loads_must_all_pass=True)
        self.check_journals(arch)


if __name__ == "__main__":
    harness.main()
