"""test_crash.py - acknowledged commits survive kill -9 and SIGTERM (SPEC guarantees 1, 4).

Several writer threads commit in a loop over gRPC (python3-grpcio against
understudy.v1.Store/Commit): mostly single puts, every fifth commit three puts
at once. At a random moment the collector gets SIGKILL. Then, for each round:
  - understudy-inspect on the dead store: gaps 0, bad_records 0,
    last_seq == position_seq, last_seq >= the highest acknowledged seq;
  - after a restart: every acknowledged put is there with its exact body; a
    commit that was in flight (sent, never acknowledged) is all there or not at
    all; nothing is there that was never sent; status last_seq equals what
    inspect saw and is >= the highest acknowledged seq;
  - acknowledged seq ranges never overlap, across all rounds (nothing reused).
SIGTERM: the collector exits 0 promptly while writers are busy, and data is intact.
"""

import threading
import time

import harness
from harness import Proto, SystemTest, run_inspect, wait_until

NS = "site-a"
ACCOUNT = "CRASH"
FILE = "F"
N_WRITERS = 4
N_ROUNDS = 4
GRPC_TIMEOUT_S = 20


class Writers:
    """N_WRITERS threads committing until stopped or until a call fails."""

    def __init__(self, proto, addr, tag, rng):
        self.proto = proto
        self.addr = addr
        self.tag = tag
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.attempted = []  # lists of (id, body): every commit sent
        self.acked = []      # (ops, first_seq, last_seq) of every acknowledged commit
        self.errors = []
        self.seeds = [rng.randrange(1 << 30) for _ in range(N_WRITERS)]
        self.threads = [threading.Thread(target=self.run, args=(w,), daemon=True)
                        for w in range(N_WRITERS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def n_acked(self):
        with self.lock:
            return len(self.acked)

    def join(self, timeout_s=GRPC_TIMEOUT_S + 10):
        self.stop.set()
        for t in self.threads:
            t.join(timeout_s)
            if t.is_alive():
                raise AssertionError("a writer thread did not stop")

    def run(self, w):
        import random
        rng = random.Random(self.seeds[w])
        p = self.proto
        channel = p.channel(self.addr)
        stub = p.stub(channel)
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                n_ops = 3 if n % 5 == 0 else 1
                ops = []
                for k in range(n_ops):
                    ident = ("%s-w%d-%d-%d" % (self.tag, w, n, k)).encode()
                    size = rng.choice((0, 1, 10, 100, 300, 2000))
                    body = rng.randbytes(size)
                    ops.append((ident, body))
                req = p.CommitRequest(namespace=NS, ops=[
                    p.Op(kind=p.Op.Kind.Value("WRITE"), account=ACCOUNT, file=FILE, id=i, body=b)
                    for i, b in ops])
                with self.lock:
                    self.attempted.append(ops)
                try:
                    resp = stub.Commit(req, timeout=GRPC_TIMEOUT_S)
                except Exception as e:  # grpc.RpcError: the collector went away
                    with self.lock:
                        self.errors.append(e)
                    return
                with self.lock:
                    self.acked.append((ops, resp.first_seq, resp.last_seq))
        finally:
            channel.close()


class CrashTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.proto = Proto()

    def stub(self, c):
        ch = self.proto.channel(c.addr)
        self.addCleanup(ch.close)
        return self.proto.stub(ch)

    def create_file(self, c):
        p = self.proto
        self.stub(c).Commit(p.CommitRequest(namespace=NS, ops=[
            p.Op(kind=p.Op.Kind.Value("CREATE_FILE"), account=ACCOUNT, file=FILE, logged=True)]),
            timeout=GRPC_TIMEOUT_S)

    def scan_all(self, c):
        p = self.proto
        items = {}
        for resp in self.stub(c).Scan(p.ScanRequest(namespace=NS, account=ACCOUNT, file=FILE),
                                      timeout=120):
            for it in resp.items:
                self.assertNotIn(it.id, items, "scan returned %r twice" % it.id)
                items[it.id] = it.body
        return items

    def grpc_last_seq(self, c):
        return self.stub(c).Status(self.proto.StatusRequest(), timeout=GRPC_TIMEOUT_S).last_seq

    def check_acks(self, acked):
        """Each ack covers one seq per op; ranges never overlap."""
        ranges = []
        for ops, first, last in acked:
            self.assertGreater(first, 0)
            self.assertEqual(last - first + 1, len(ops), "seq range of a %d-op commit" % len(ops))
            ranges.append((first, last))
        ranges.sort()
        for (_, a_last), (b_first, _) in zip(ranges, ranges[1:]):
            self.assertLess(a_last, b_first, "acknowledged seq ranges overlap")

    def check_data(self, items, acked, attempted):
        acked_ids = set()
        for ops, first, _ in acked:
            for ident, body in ops:
                acked_ids.add(ident)
                self.assertIn(ident, items, "acknowledged put %r (seq %d) lost" % (ident, first))
                self.assertEqual(items[ident], body, "acknowledged put %r: other body" % ident)
        sent = {}
        for ops in attempted:
            for ident, body in ops:
                sent[ident] = body
            present = [i for i, _ in ops if i in items]
            self.assertIn(len(present), (0, len(ops)),
                          "a commit of %d puts is partly there: %r" % (len(ops), present))
            for ident, body in ops:
                if ident in items:
                    self.assertEqual(items[ident], body, "in-flight put %r: other body" % ident)
        for ident in items:
            self.assertIn(ident, sent, "item %r was never sent" % ident)

    def test_sigkill_rounds(self):
        c = self.start_collector()
        self.create_file(c)
        acked, attempted = [], []
        for rnd in range(N_ROUNDS):
            writers = Writers(self.proto, c.addr, "r%d" % rnd, self.rng).start()
            try:
                want = self.rng.randrange(5, 200)
                wait_until(lambda: writers.n_acked() >= want or writers.errors, 60,
                           "%d acknowledged commits" % want)
                self.assertEqual(writers.errors, [], "a commit failed before the kill")
                # a random moment within the next half second of commits
                time.sleep(self.rng.random() * 0.5)
                c.kill()
            finally:
                writers.join()
            acked += writers.acked
            attempted += writers.attempted
            self.check_acks(acked)
            max_acked = max(last for _, _, last in acked)
            ins = run_inspect(c.data_dir)
            msg = "round %d after SIGKILL: %r" % (rnd, ins)
            self.assertEqual((ins["gaps"], ins["bad_records"]), (0, 0), msg)
            self.assertEqual(ins["last_seq"], ins["position_seq"], msg)
            self.assertGreaterEqual(ins["last_seq"], max_acked, msg)
            c.start()
            self.assertEqual(self.grpc_last_seq(c), ins["last_seq"],
                             "round %d: last_seq after restart differs from the store's" % rnd)
            self.check_data(self.scan_all(c), acked, attempted)
        # after the last round the store is clean once stopped
        self.assertEqual(c.terminate(), 0)
        ins = run_inspect(c.data_dir)
        self.assertEqual((ins["gaps"], ins["bad_records"]), (0, 0), ins)
        self.assertEqual(ins["last_seq"], ins["position_seq"], ins)
        self.assertGreaterEqual(ins["last_seq"], max(last for _, _, last in acked))

    def test_sigterm_exits_0_promptly_and_keeps_data(self):
        c = self.start_collector()
        self.create_file(c)
        writers = Writers(self.proto, c.addr, "t", self.rng).start()
        try:
            wait_until(lambda: writers.n_acked() >= 50 or writers.errors, 60,
                       "50 acknowledged commits")
            self.assertEqual(writers.errors, [], "a commit failed before SIGTERM")
            t0 = time.monotonic()
            rc = c.terminate(timeout_s=15)
            elapsed = time.monotonic() - t0
        finally:
            writers.join()
        self.assertEqual(rc, 0, "collector exit status after SIGTERM")
        self.assertLess(elapsed, 15)
        self.check_acks(writers.acked)
        ins = run_inspect(c.data_dir)
        self.assertEqual((ins["gaps"], ins["bad_records"]), (0, 0), ins)
        self.assertEqual(ins["last_seq"], ins["position_seq"], ins)
        self.assertGreaterEqual(ins["last_seq"], max(last for _, _, last in writers.acked))
        c.start()
        self.assertEqual(self.grpc_last_seq(c), ins["last_seq"])
        self.check_data(self.scan_all(c), writers.acked, writers.attempted)
        # an idle collector stops as promptly
        t0 = time.monotonic()
        self.assertEqual(c.terminate(timeout_s=15), 0)
        self.assertLess(time.monotonic() - t0, 15)


if __name__ == "__main__":
    harness.main()
