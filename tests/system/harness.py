"""harness.py - what every system test of understudy shares.

System tests drive the real binaries the way a user does: a collector started
from a config file in a temp dir on a free loopback port, the `understudy` CLI,
`understudy-inspect`, and python3-grpcio as a second client of the .proto.
They compare DATA (bodies, ids, sequence numbers, exit codes), never log text.
Nothing waits with a fixed sleep: every wait polls a condition with a deadline.

Environment (set by CMakeLists.txt for ctest):
  US_BIN_DIR     the build dir holding understudy-collector, understudy, ...
  US_PROTO_DESC  the protobuf descriptor set of include/understudy.proto
  US_TEST_SEED   optional: seed of the tests' random choices (printed on failure)

Run one file by hand:
  US_BIN_DIR=build-h3 US_PROTO_DESC=build-h3/understudy.desc \
      /usr/bin/python3 tests/system/test_store_cli.py -v
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.path.abspath(os.environ.get("US_BIN_DIR", os.path.join(SOURCE_DIR, "build")))
PROTO_DESC = os.environ.get("US_PROTO_DESC", os.path.join(BIN_DIR, "understudy.desc"))

READY_TIMEOUT_S = 20.0   # a collector must answer `status` within this
STOP_TIMEOUT_S = 15.0    # SIGTERM must end a collector within this
CLI_TIMEOUT_S = 120.0    # one CLI call (a 50,000-item load under ASan included)
LOG_TAIL_LINES = 60      # lines of a collector's stderr shown on failure


def binary(name):
    """Path of a built program; the test is skipped when it is missing."""
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("%s not built in %s" % (name, BIN_DIR))
    return path


_port_rng = random.SystemRandom()  # never a seeded sequence shared by parallel tests


def _ephemeral_start():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A loopback TCP port nobody listens on right now, below the kernel's
    ephemeral range: a daemon restarted on its port must find it free, and a
    port of that range can be taken meanwhile as the local end of any
    outgoing connection (a client's, another test's)."""
    top = _ephemeral_start()
    low = max(1024, top - 12000)
    for _ in range(200):
        port = _port_rng.randrange(low, top)
        if port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(predicate, timeout_s, what, interval_s=0.02):
    """Polls predicate() until it returns a true value (returned) or the
    deadline passes (AssertionError naming what was awaited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout_s, what))
        time.sleep(interval_s)


def test_seed():
    seed = os.environ.get("US_TEST_SEED")
    return int(seed) if seed else random.SystemRandom().randrange(1 << 31)


def child_env():
    env = dict(os.environ)
    env.pop("UNDERSTUDY_ADDR", None)
    # The ctest environment asks ASan to abort; a test decides what an exit means.
    return env


def escape_id(raw):
    """The CLI's printable form of an id: backslash as \\\\, printable ASCII as
    is, every other byte as \\xNN."""
    out = []
    for b in raw:
        if b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\x%02X" % b)
    return "".join(out)


def unescape_id(text):
    """Inverse of escape_id (hex digits in either case) -> bytes."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] == "\\":
            out.append(0x5C)
            i += 2
        elif c == "\\" and i + 3 < len(text) and text[i + 1] == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out.extend(c.encode("ascii"))
            i += 1
    return bytes(out)


def tsv_escape(raw):
    """`understudy load` escaping of a field: \\\\ \\t \\n \\r, other control and
    high bytes as \\xNN."""
    out = []
    for b in raw:
        if b == 0x5C:
            out.append("\\\\")
        elif b == 0x09:
            out.append("\\t")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x0D:
            out.append("\\r")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\x%02X" % b)
    return "".join(out)


class Collector:
    """One understudy-collector process with its own dir, config and port.

    The dir holds collector.ini, data/ (data_dir) and stderr.log (all runs of
    the process appended). is_expected_running is what the test believes;
    tearDown reports a collector that died without being told to."""

    program = "understudy-collector"

    # The daemons' own disk_reserve (1 GiB or 5 %) would make every test fail
    # on a machine with little free disk; the tests of the reserve set theirs.
    TEST_DISK_RESERVE = "32MiB"

    def default_config(self):
        return {"namespace": "site-a", "listen": self.addr, "data_dir": self.data_dir,
                "log_level": "info", "disk_reserve": self.TEST_DISK_RESERVE}

    def __init__(self, root, name="collector", port=None, **config):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.is_port_picked = port is None  # ours to change if someone takes it
        self.port = port or free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "daemon.ini")
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.config = self.default_config()
        self.config.update(config)
        self.proc = None
        self.is_expected_running = False
        self.write_config()

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write("# written by tests/system/harness.py\n")
            sections = []
            for key, value in self.config.items():
                if isinstance(value, dict):
                    sections.append((key, value))  # "[namespace site-a]": {...}
                elif isinstance(value, (list, tuple)):
                    for v in value:
                        f.write("%s = %s\n" % (key, v))
                else:
                    f.write("%s = %s\n" % (key, value))
            for header, body in sections:
                f.write("[%s]\n" % header)
                for key, value in body.items():
                    f.write("%s = %s\n" % (key, value))

    def start(self, wait=True, attempts=3):
        """Starts the process; with wait, returns once it answers `status`.
        A port picked by free_port() can be taken by another process before
        the collector binds it: then (and only then) it retries on a new port."""
        for attempt in range(attempts):
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except AssertionError:
                if (self.is_running() or not self.is_port_picked or port_is_free(self.port)
                        or attempt == attempts - 1):
                    raise
            self.port = free_port()
            self.addr = "127.0.0.1:%d" % self.port
            self.config["listen"] = self.addr
            self.write_config()
        return self

    def _spawn(self):
        assert self.proc is None or self.proc.poll() is not None, "collector already running"
        log = open(self.log_path, "ab")
        log.write(b"---- harness: start\n")
        log.flush()
        try:
            self.proc = subprocess.Popen(
                [binary(self.program), "--config", self.config_path],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=child_env())
        finally:
            log.close()
        self.is_expected_running = True

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s=READY_TIMEOUT_S):
        """Waits until `understudy status` answers; fails at once, with the
        log, if the process exits first."""
        cli_path = binary("understudy")

        def ready():
            if not self.is_running():
                raise AssertionError("%s exited with %s before it was ready\n%s"
                                     % (self.program, self.proc.returncode, self.log_tail()))
            r = subprocess.run([cli_path, "--addr", self.addr, "status"],
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=CLI_TIMEOUT_S, env=child_env())
            return r.returncode == 0
        try:
            wait_until(ready, timeout_s, "collector %s to answer status" % self.addr,
                       interval_s=0.05)
        except AssertionError as e:
            if "timed out" in str(e):
                raise AssertionError("%s\n%s" % (e, self.log_tail()))
            raise

    def signal(self, sig):
        if self.is_running():
            self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL and reap; returns the exit status (None if not running)."""
        self.is_expected_running = False
        if not self.is_running():
            return None if self.proc is None else self.proc.returncode
        self.proc.kill()
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def terminate(self, timeout_s=STOP_TIMEOUT_S):
        """SIGTERM and wait for the exit; returns the exit status, or raises
        AssertionError (after a SIGKILL) when it does not exit in time."""
        self.is_expected_running = False
        if not self.is_running():
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("collector did not exit within %.0f s of SIGTERM\n%s"
                                 % (timeout_s, self.log_tail()))

    def restart(self, wait=True):
        self.kill()
        return self.start(wait=wait)

    def log_tail(self, n=LOG_TAIL_LINES):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no collector log)"
        return "---- %s (last %d lines)\n%s" % (self.log_path, n, "\n".join(lines[-n:]))


class Archiver(Collector):
    """One understudy-archiver process, like Collector (same helpers)."""

    program = "understudy-archiver"

    def default_config(self):
        return {"listen": self.addr, "data_dir": self.data_dir, "log_level": "info",
                "disk_reserve": self.TEST_DISK_RESERVE}


def run_cli(addr, *args, stdin=None, timeout=CLI_TIMEOUT_S):
    """Runs `understudy --addr ADDR ARGS...`; args may be str or bytes.
    Returns (returncode, stdout bytes, stderr bytes)."""
    argv = [binary("understudy")]
    if addr is not None:
        argv += ["--addr", addr]
    argv += list(args)
    r = subprocess.run(argv, input=stdin if stdin is not None else b"",
                       capture_output=True, timeout=timeout, env=child_env())
    return r.returncode, r.stdout, r.stderr


def run_inspect(data_dir):
    """`understudy-inspect DATA_DIR --json` -> dict (AssertionError on failure)."""
    r = subprocess.run([binary("understudy-inspect"), data_dir, "--json"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=CLI_TIMEOUT_S, env=child_env())
    if r.returncode != 0:
        raise AssertionError("understudy-inspect %s failed (%d): %s"
                             % (data_dir, r.returncode, r.stderr.decode(errors="replace")))
    return json.loads(r.stdout)


class SystemTest(unittest.TestCase):
    """Base class: a temp dir per test, collectors started through it, every
    process killed and the dir removed in tearDown (even on failure), the
    collectors' stderr shown when the test failed."""

    def setUp(self):
        self.seed = test_seed()
        self.rng = random.Random(self.seed)
        self.tmp = tempfile.mkdtemp(prefix="us-%s-" % self._testMethodName[:30])
        self.collectors = []

    def tearDown(self):
        died = [c for c in self.collectors if c.is_expected_running and not c.is_running()]
        for c in self.collectors:
            c.kill()
        if self._has_failed() or died:
            sys.stderr.write("\n[%s] seed=%d (rerun with US_TEST_SEED=%d)\n"
                             % (self.id(), self.seed, self.seed))
            for c in self.collectors:
                sys.stderr.write(c.log_tail() + "\n")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if died:
            self.fail("collector %s died during the test (exit %s)"
                      % (", ".join(c.addr for c in died),
                         ", ".join(str(c.proc.returncode) for c in died)))

    def _has_failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return False
        for _, lst in (("e", getattr(result, "errors", [])), ("f", getattr(result, "failures", []))):
            for test, _ in lst:
                if getattr(test, "test_case", test) is self:
                    return True
        return False

    # ---- processes

    def start_collector(self, name=None, wait=True, **config):
        c = Collector(self.tmp, name or "collector%d" % len(self.collectors), **config)
        self.collectors.append(c)
        return c.start(wait=wait)

    def start_archiver(self, name=None, wait=True, **config):
        """An archiver; kept in self.collectors too, so tearDown kills it and
        shows its log like any daemon's."""
        a = Archiver(self.tmp, name or "archiver%d" % len(self.collectors), **config)
        self.collectors.append(a)
        return a.start(wait=wait)

    # ---- CLI

    def cli(self, *args, stdin=None, addr=None, collector=None, timeout=CLI_TIMEOUT_S):
        """(returncode, stdout bytes, stderr bytes) of `understudy --addr A ARGS`;
        A is addr, else collector's, else the first collector's."""
        if addr is None:
            addr = (collector or self.collectors[0]).addr
        return run_cli(addr, *args, stdin=stdin, timeout=timeout)

    def cli_ok(self, *args, **kw):
        """Runs the CLI, asserts exit 0, returns stdout."""
        rc, out, err = self.cli(*args, **kw)
        self.assertEqual(rc, 0, "understudy %s: exit %d, stderr %r" % (_show(args), rc, err))
        return out

    def cli_json(self, *args, **kw):
        """`understudy --json ARGS` -> parsed JSON (asserts exit 0)."""
        out = self.cli_ok("--json", *args, **kw)
        try:
            return json.loads(out)
        except ValueError:
            raise AssertionError("understudy --json %s: not JSON: %r" % (_show(args), out))

    def status(self, **kw):
        return self.cli_json("status", **kw)

    def last_seq(self, **kw):
        return self.status(**kw)["last_seq"]

    def archived_ns(self, arch, ns):
        """The archiver's `status --json` entry of namespace ns, or None."""
        for n in self.cli_json("status", collector=arch)["namespaces"]:
            if n["namespace"] == ns:
                return n
        return None

    def assert_one_line(self, err, what=""):
        """stderr holds exactly one non-empty line (a final newline allowed)."""
        text = err.decode("utf-8", "replace")
        body = text[:-1] if text.endswith("\n") else text
        self.assertTrue(body.strip(), "%s: stderr is empty" % what)
        self.assertNotIn("\n", body, "%s: stderr is not one line: %r" % (what, text))

    def list_ids(self, ns, account, file, *extra, **kw):
        """`understudy list` -> list of raw ids (bytes), in the printed order."""
        out = self.cli_ok("list", ns, account, file, *extra, **kw)
        return [unescape_id(line) for line in out.decode("ascii").splitlines()]

    def files(self, ns, account=None, **kw):
        """`understudy --json files` -> {(account, file): info dict}."""
        args = ["files", ns] + ([account] if account else [])
        j = self.cli_json(*args, **kw)
        return {(f["account"], f["file"]): f for f in j["files"]}


def _show(args):
    return " ".join(a if isinstance(a, str) else repr(a) for a in args)


# ---- gRPC (python3-grpcio) against include/understudy.proto

class Proto:
    """Message classes of understudy.v1 built from the descriptor set, and
    unary/stream callables on a channel; no generated stubs."""

    def __init__(self, desc_path=PROTO_DESC):
        try:
            import grpc  # noqa: F401
            from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        except ImportError as e:
            raise unittest.SkipTest("python3-grpcio/protobuf not importable: %s" % e)
        if not os.path.exists(desc_path):
            raise unittest.SkipTest("descriptor set %s not built" % desc_path)
        with open(desc_path, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
        self.pool = descriptor_pool.DescriptorPool()
        for fd in fds.file:
            self.pool.Add(fd)
        factory = message_factory.MessageFactory(self.pool)
        get_class = getattr(message_factory, "GetMessageClass", None)
        for name in ("Op", "CommitRequest", "CommitResponse", "ReadRequest", "ReadResponse",
                     "ScanRequest", "ScanResponse", "Item", "ListFilesRequest",
                     "ListFilesResponse", "FileInfo", "StatusRequest", "StatusResponse",
                     "Frame", "Hello", "Entries", "Heartbeat", "SeedBegin", "SeedEnd", "SeedData",
                     "Ack",
                     "Welcome", "Progress", "OpenSnapshotRequest", "OpenSnapshotResponse",
                     "ReleaseSnapshotRequest", "ReleaseSnapshotResponse", "SaveRequest",
                     "SaveResponse", "PromoteRequest", "PromoteResponse", "QueryRequest",
                     "QueryResponse", "QueryRow"):
            d = self.pool.FindMessageTypeByName("understudy.v1." + name)
            cls = get_class(d) if get_class else factory.GetPrototype(d)
            setattr(self, name, cls)

    def channel(self, addr):
        import grpc
        return grpc.insecure_channel(addr, options=[
            ("grpc.max_receive_message_length", 80 * 1024 * 1024),
            ("grpc.max_send_message_length", 80 * 1024 * 1024)])

    def stub(self, channel):
        return Stub(self, channel)


class Stub:
    """Callables for every method of Store and Admin."""

    def __init__(self, proto, channel):
        p = proto
        self.Commit = channel.unary_unary("/understudy.v1.Store/Commit",
                                          request_serializer=p.CommitRequest.SerializeToString,
                                          response_deserializer=p.CommitResponse.FromString)
        self.Read = channel.unary_unary("/understudy.v1.Store/Read",
                                        request_serializer=p.ReadRequest.SerializeToString,
                                        response_deserializer=p.ReadResponse.FromString)
        self.Scan = channel.unary_stream("/understudy.v1.Store/Scan",
                                         request_serializer=p.ScanRequest.SerializeToString,
                                         response_deserializer=p.ScanResponse.FromString)
        self.ListFiles = channel.unary_unary(
            "/understudy.v1.Store/ListFiles",
            request_serializer=p.ListFilesRequest.SerializeToString,
            response_deserializer=p.ListFilesResponse.FromString)
        self.OpenSnapshot = channel.unary_unary(
            "/understudy.v1.Store/OpenSnapshot",
            request_serializer=p.OpenSnapshotRequest.SerializeToString,
            response_deserializer=p.OpenSnapshotResponse.FromString)
        self.ReleaseSnapshot = channel.unary_unary(
            "/understudy.v1.Store/ReleaseSnapshot",
            request_serializer=p.ReleaseSnapshotRequest.SerializeToString,
            response_deserializer=p.ReleaseSnapshotResponse.FromString)
        self.Query = channel.unary_stream("/understudy.v1.Store/Query",
                                          request_serializer=p.QueryRequest.SerializeToString,
                                          response_deserializer=p.QueryResponse.FromString)
        self.Save = channel.unary_stream("/understudy.v1.Admin/Save",
                                         request_serializer=p.SaveRequest.SerializeToString,
                                         response_deserializer=p.SaveResponse.FromString)
        self.Status = channel.unary_unary("/understudy.v1.Admin/Status",
                                          request_serializer=p.StatusRequest.SerializeToString,
                                          response_deserializer=p.StatusResponse.FromString)
        self.Promote = channel.unary_unary("/understudy.v1.Admin/Promote",
                                           request_serializer=p.PromoteRequest.SerializeToString,
                                           response_deserializer=p.PromoteResponse.FromString)
        self.Push = channel.stream_stream("/understudy.v1.Replication/Push",
                                          request_serializer=p.Frame.SerializeToString,
                                          response_deserializer=p.Ack.FromString)


def dump_namespace(stub, proto, ns, timeout_s=30, snapshot=0):
    """Everything a namespace holds (at a snapshot, when given), through
    Store/ListFiles and Scan: {(account, file): {"logged": bool, "data": {id:
    body}, "dict": {id: body}, ...}}."""
    out = {}
    files = stub.ListFiles(proto.ListFilesRequest(namespace=ns, snapshot=snapshot),
                           timeout=timeout_s).files
    for f in files:
        entry = {"logged": f.logged, "shipped": f.logged and f.account_logged,
                 "stale_since_seq": f.stale_since_seq, "data": {}, "dict": {}}
        for section, is_dict in (("data", False), ("dict", True)):
            req = proto.ScanRequest(namespace=ns, account=f.account, file=f.file, dict=is_dict,
                                    snapshot=snapshot)
            for chunk in stub.Scan(req, timeout=timeout_s):
                for item in chunk.items:
                    entry[section][item.id] = item.body
        out[(f.account, f.file)] = entry
    return out


def main():
    unittest.main(verbosity=2)
