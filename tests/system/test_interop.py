"""test_interop.py - python3-grpcio as a second client of include/understudy.proto.

No generated stubs: the message classes come from the descriptor set that the
build makes from the .proto (US_PROTO_DESC), so this checks the wire contract
itself: Store/Commit, Read, Scan (server stream), ListFiles and Admin/Status on
a real collector, their values, and the status codes of refusals.
"""

import grpc

import harness
from harness import Proto, SystemTest

NS = "site-a"
TIMEOUT_S = 30


class InteropTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.p = Proto()
        self.c = self.start_collector()
        self.channel = self.p.channel(self.c.addr)
        self.addCleanup(self.channel.close)
        self.s = self.p.stub(self.channel)

    # ---- helpers

    def op(self, kind, **kw):
        return self.p.Op(kind=self.p.Op.Kind.Value(kind), **kw)

    def commit(self, *ops, ns=NS):
        return self.s.Commit(self.p.CommitRequest(namespace=ns, ops=list(ops)), timeout=TIMEOUT_S)

    def read(self, account, file, ident, dict_=False, ns=NS):
        return self.s.Read(self.p.ReadRequest(namespace=ns, account=account, file=file,
                                              dict=dict_, id=ident), timeout=TIMEOUT_S).body

    def scan(self, account, file, **kw):
        req = self.p.ScanRequest(namespace=kw.pop("ns", NS), account=account, file=file, **kw)
        chunks = list(self.s.Scan(req, timeout=TIMEOUT_S))
        return chunks, [(it.id, it.body) for ch in chunks for it in ch.items]

    def status(self):
        return self.s.Status(self.p.StatusRequest(), timeout=TIMEOUT_S)

    def assert_code(self, code, fn, *args, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            r = fn(*args, **kw)
            if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
                list(r)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        self.assertTrue(cm.exception.details(), "a refusal without a message")
        return cm.exception

    # ---- tests

    def test_status(self):
        st = self.status()
        self.assertEqual((st.node, st.namespace, st.role, st.generation, st.commit_mode),
                         ("collector", NS, "primary", 1, "local"))
        self.assertEqual(len(st.archivers), 0)
        self.assertEqual(len(st.namespaces), 0)

    def test_commit_read_and_seq_ranges(self):
        seq0 = self.status().last_seq
        r = self.commit(self.op("CREATE_FILE", account="ACC", file="F", logged=True))
        self.assertEqual((r.first_seq, r.last_seq, r.generation), (seq0 + 1, seq0 + 1, 1))
        bodies = {b"a": b"A\xfe1\xfd2\xfc3", b"nul": b"\x00x\x00", b"empty": b"",
                  b"all": bytes(range(256)) * 10}
        r = self.commit(*[self.op("WRITE", account="ACC", file="F", id=i, body=b)
                          for i, b in bodies.items()],
                        self.op("WRITE", account="ACC", file="F", dict=True, id=b"a", body=b"D"))
        self.assertEqual((r.first_seq, r.last_seq), (seq0 + 2, seq0 + 6))
        self.assertEqual(self.status().last_seq, seq0 + 6)
        for i, b in bodies.items():
            self.assertEqual(self.read("ACC", "F", i), b, i)
        self.assertEqual(self.read("ACC", "F", b"a", dict_=True), b"D")
        # delete: absent afterwards; deleting an absent item is no error
        r = self.commit(self.op("DELETE", account="ACC", file="F", id=b"nul"),
                        self.op("DELETE", account="ACC", file="F", id=b"never"))
        self.assertEqual(r.first_seq, seq0 + 7)
        self.assert_code(grpc.StatusCode.NOT_FOUND, self.read, "ACC", "F", b"nul")
        # unlogged file: nothing journaled, both seqs 0
        self.commit(self.op("CREATE_FILE", account="ACC", file="U", logged=False))
        before = self.status().last_seq
        r = self.commit(self.op("WRITE", account="ACC", file="U", id=b"k", body=b"v"))
        self.assertEqual((r.first_seq, r.last_seq), (0, 0))
        self.assertEqual(self.status().last_seq, before)
        self.assertEqual(self.read("ACC", "U", b"k"), b"v")

    def test_scan_stream(self):
        self.commit(self.op("CREATE_FILE", account="ACC", file="S", logged=True))
        n = 2600
        items = {b"k%05d" % i: (b"body\xfe%d" % i) * (1 + i % 50) for i in range(n)}
        ops = [self.op("WRITE", account="ACC", file="S", id=i, body=b) for i, b in items.items()]
        for start in range(0, n, 1000):
            self.commit(*ops[start:start + 1000])
        self.commit(self.op("WRITE", account="ACC", file="S", dict=True, id=b"d1", body=b"x"))
        expected = sorted(items.items())
        chunks, got = self.scan("ACC", "S")
        self.assertEqual(got, expected)
        self.assertGreater(len(chunks), 1, "2600 items should come in more than one chunk")
        _, got = self.scan("ACC", "S", limit=10)
        self.assertEqual(got, expected[:10])
        _, got = self.scan("ACC", "S", start_after=expected[99][0], limit=5)
        self.assertEqual(got, expected[100:105])
        _, got = self.scan("ACC", "S", keys_only=True)
        self.assertEqual([i for i, _ in got], [i for i, _ in expected])
        self.assertTrue(all(b == b"" for _, b in got), "keys_only sent bodies")
        _, got = self.scan("ACC", "S", dict=True)
        self.assertEqual(got, [(b"d1", b"x")])
        _, got = self.scan("ACC", "S", start_after=expected[-1][0])
        self.assertEqual(got, [])

    def test_list_files(self):
        self.commit(self.op("CREATE_FILE", account="A1", file="F1", logged=True),
                    self.op("CREATE_FILE", account="A1", file="F2", logged=False),
                    self.op("CREATE_FILE", account="A2", file="F1", logged=True))
        self.commit(self.op("WRITE", account="A1", file="F1", id=b"x", body=b""),
                    self.op("WRITE", account="A1", file="F1", id=b"y", body=b""),
                    self.op("WRITE", account="A1", file="F1", dict=True, id=b"z", body=b""))
        self.commit(self.op("SET_LOGGING", account="A2", file="", logged=False))
        r = self.s.ListFiles(self.p.ListFilesRequest(namespace=NS), timeout=TIMEOUT_S)
        got = [(f.account, f.file, f.logged, f.account_logged, f.data_items, f.dict_items)
               for f in r.files]
        self.assertEqual(got, [("A1", "F1", True, True, 2, 1), ("A1", "F2", False, True, 0, 0),
                               ("A2", "F1", True, False, 0, 0)])
        r = self.s.ListFiles(self.p.ListFilesRequest(namespace=NS, account="A2"),
                             timeout=TIMEOUT_S)
        self.assertEqual([(f.account, f.file) for f in r.files], [("A2", "F1")])

    def test_error_codes_change_nothing(self):
        self.commit(self.op("CREATE_FILE", account="ACC", file="F", logged=True))
        self.commit(self.op("WRITE", account="ACC", file="F", id=b"keep", body=b"k"))
        seq = self.status().last_seq
        C = grpc.StatusCode

        def write(**kw):
            args = dict(account="ACC", file="F", id=b"new", body=b"v")
            args.update(kw)
            return self.op("WRITE", **args)
        cases = [
            ("missing item", C.NOT_FOUND, self.read, ("ACC", "F", b"absent"), {}),
            ("read from a missing file", C.NOT_FOUND, self.read, ("ACC", "NOFILE", b"k"), {}),
            ("write to a missing file", C.NOT_FOUND, self.commit, (write(file="NOFILE"),), {}),
            ("bad account name", C.INVALID_ARGUMENT, self.commit, (write(account="a b"),), {}),
            ("bad file name", C.INVALID_ARGUMENT, self.commit, (write(file="x" * 65),), {}),
            ("id with NUL", C.INVALID_ARGUMENT, self.commit, (write(id=b"a\x00b"),), {}),
            ("id with 0xFF", C.INVALID_ARGUMENT, self.commit, (write(id=b"a\xff"),), {}),
            ("empty id", C.INVALID_ARGUMENT, self.commit, (write(id=b""),), {}),
            ("id of 1025 bytes", C.INVALID_ARGUMENT, self.commit, (write(id=b"i" * 1025),), {}),
            ("bad namespace name", C.INVALID_ARGUMENT, self.commit, (write(),), {"ns": "Bad NS"}),
            # names are bytes with a length: a NUL is refused, never cut at
            ("account with NUL", C.INVALID_ARGUMENT, self.commit, (write(account="ACC\0x"),), {}),
            ("file with NUL", C.INVALID_ARGUMENT, self.commit, (write(file="F\0"),), {}),
            ("namespace with NUL", C.INVALID_ARGUMENT, self.commit, (write(),),
             {"ns": NS + "\0evil"}),
            ("read namespace with NUL", C.INVALID_ARGUMENT, self.read, ("ACC", "F", b"keep"),
             {"ns": NS + "\0"}),
            ("read file with NUL", C.INVALID_ARGUMENT, self.read, ("ACC", "F\0x", b"keep"), {}),
            ("scan account with NUL", C.INVALID_ARGUMENT, self.scan, ("ACC\0", "F"), {}),
            ("unspecified op kind", C.INVALID_ARGUMENT, self.commit,
             (self.p.Op(account="ACC", file="F", id=b"x"),), {}),
            ("wrong namespace (commit)", C.FAILED_PRECONDITION, self.commit, (write(),),
             {"ns": "site-b"}),
            ("wrong namespace (read)", C.FAILED_PRECONDITION, self.read, ("ACC", "F", b"keep"),
             {"ns": "site-b"}),
            ("wrong namespace (scan)", C.FAILED_PRECONDITION, self.scan, ("ACC", "F"),
             {"ns": "site-b"}),
            ("file created twice", C.ALREADY_EXISTS, self.commit,
             (self.op("CREATE_FILE", account="ACC", file="F", logged=True),), {}),
            # atomic: a valid write followed by a bad one leaves nothing
            ("valid write then a bad id", C.INVALID_ARGUMENT, self.commit,
             (write(), write(id=b"bad\xfe")), {}),
            ("valid write then a missing file", C.NOT_FOUND, self.commit,
             (write(), write(file="NOFILE")), {}),
        ]
        for what, code, fn, args, kw in cases:
            with self.subTest(what):
                self.assert_code(code, fn, *args, **kw)
        self.assertEqual(self.status().last_seq, seq, "a refused call moved last_seq")
        self.assert_code(C.NOT_FOUND, self.read, "ACC", "F", b"new")
        _, got = self.scan("ACC", "F")
        self.assertEqual(got, [(b"keep", b"k")])

    def test_unknown_method_is_unimplemented(self):
        call = self.channel.unary_unary("/understudy.v1.Store/NoSuchMethod")
        with self.assertRaises(grpc.RpcError) as cm:
            call(b"", timeout=TIMEOUT_S)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
    harness.main()
