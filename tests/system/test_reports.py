"""test_reports.py - reports: `understudy query` and Store.Query (issue 14).

A fixture account SALES with file CUSTOMERS, whose dictionary has items of
both kinds (Advanced Pick A items and U2 D items) and the conversions, and
items with multivalues and subvalues, written on a site and streamed to an
archiver:
  - golden outputs of each verb, modifier and conversion, from the archiver;
  - the same reports from the site (the collector) as from the archiver;
  - `--csv` read back with Python's csv module equals `--json`;
  - a query at a snapshot does not change while the site keeps committing;
  - refusals: a sentence that does not parse names the word and its
    position, an unknown attribute, file, namespace or snapshot; nothing
    changes;
  - Store.Query from python3-grpcio, and its status codes.
"""

import csv
import io
import json
import re
import threading

import grpc

import harness
from harness import Proto, SystemTest, tsv_escape, wait_until

NS = "site-a"
ACC = "SALES"
FILE = "CUSTOMERS"
AM, VM, SVM = b"\xfe", b"\xfd", b"\xfc"


def item(*attrs):
    return AM.join(a if isinstance(a, bytes) else a.encode() for a in attrs)


def ap(no, heading, conv="", corr="", just="L", width="10"):
    """An Advanced Pick attribute-defining item: A, number, heading, 4-6
    empty, conversion, correlative, justification, width."""
    return item("A", str(no), heading, "", "", "", conv, corr, just, width)


def u2(no, conv, heading, fmt, sm="S"):
    """A U2 / OpenQM D item: D, field, conversion, heading, format, S/M."""
    return item("D", str(no), conv, heading, fmt, sm)


DICT = {
    "@ID": ap(0, "Cust", width="5"),
    "NAME": ap(1, "Name", width="10"),
    "CITY": ap(2, "City", conv="MCU", width="8"),
    "STATE": u2(3, "", "St", "2L"),
    "BALANCE": ap(4, "Balance", conv="MR2,", just="R", width="10"),
    "SINCE": u2(5, "D2/", "Since", "8R"),
    "PHONES": ap(6, "Phones", width="9"),
    "CALLED": ap(7, "Called", conv="MTS", just="R", width="8"),
    "NOTES": ap(8, "Notes", just="T", width="12"),
    "CODE": ap(1, "Code", corr="T3", width="4"),
    "ZIPS": u2(9, "", "Zip", "5R", "M"),
    "OPENED": ap(5, b"Opened" + VM + b"on", conv="D", just="R", width="11"),
    "LOWER": u2(1, "MCL", "Lower", "9L"),
    "1": ap(1, "Name", width="10"),
    "2": ap(2, "City", conv="MCU", width="8"),
}

DATA = {
    "C1": item("ACME CORP", "boston", "MA", "123456", "20000", b"555-1000" + VM + b"555-1001",
               "45296", "first customer we ever had", "02101"),
    "C2": item("BETA LLC", "austin", "TX", "-5000", "19000", "555-2000", "3600", "", "73301"),
    "C3": item("GAMMA INC", "boston", "MA", "99", "0", "", "0", "pays late",
               b"02102" + VM + b"02103"),
    "C10": item("DELTA CO", "dallas", "TX", "250000", "21000",
                b"555-4000" + SVM + b"EXT 12" + VM + b"555-4002", "86399", "", "75201"),
    "C4": item("ECHO", "Austin", "TX", "", "", "", "", "", ""),
}

# ---- golden reports (HDR-SUPP: the page heading has the time; checked apart)

GOLDEN = [
    ("LIST CUSTOMERS NAME CITY STATE BALANCE SINCE PHONES CALLED NOTES ZIPS HDR-SUPP", """\
Cust. Name...... City.... St Balance... Since... Phones... Called.. Notes....... Zip..

C1    ACME CORP  BOSTON   MA   1,234.56 10/03/22 555-1000  12:34:56 first        02101
                                                 555-1001           customer we
                                                                    ever had
C10   DELTA CO   DALLAS   TX   2,500.00 06/29/25 555-4000  23:59:59              75201
                                                 EXT 12
                                                 555-4002
C2    BETA LLC   AUSTIN   TX     -50.00 01/07/20 555-2000  01:00:00              73301
C3    GAMMA INC  BOSTON   MA       0.99 12/31/67           00:00:00 pays late    02102
                                                                                 02103
C4    ECHO       AUSTIN   TX

5 items listed.
"""),
    # SORT by two keys, a break with subtotals and the grand total
    ("SORT CUSTOMERS BY STATE BY-DSND BALANCE BREAK-ON STATE NAME TOTAL BALANCE HDR-SUPP", """\
Cust. St Name...... Balance...

C1    MA ACME CORP    1,234.56
C3    MA GAMMA INC        0.99
      ***              1,235.55

C10   TX DELTA CO     2,500.00
C2    TX BETA LLC       -50.00
C4    TX ECHO
      ***              2,450.00

***                   3,685.55

5 items listed.
"""),
    # an R attribute sorts numbers as numbers; no id column, no headings
    ("SORT CUSTOMERS WITH BALANCE BY-DSND BALANCE ID-SUPP COL-HDR-SUPP HDR-SUPP NAME BALANCE",
     """\
DELTA CO     2,500.00
ACME CORP    1,234.56
GAMMA INC        0.99
BETA LLC       -50.00

4 items listed.
"""),
    ("COUNT CUSTOMERS WITH STATE = \"TX\"", "3 items counted.\n"),
    ("COUNT CUSTOMERS WITH STATE = \"TX\" AND WITH BALANCE > \"0\"", "1 item counted.\n"),
    ("COUNT CUSTOMERS WITH STATE EQ \"MA\" OR WITH CITY = \"dallas\"", "3 items counted.\n"),
    ("COUNT CUSTOMERS WITHOUT PHONES", "2 items counted.\n"),
    ("SELECT CUSTOMERS WITH BALANCE > \"100\" BY-DSND BALANCE", "C10\nC1\n\n2 items selected.\n"),
    ("SELECT CUSTOMERS WITH PHONES = \"[1001\"", "C1\n\n1 item selected.\n"),
    ("SELECT CUSTOMERS WITH NAME LIKE \"...CO...\" BY NAME", "C1\nC10\n\n2 items selected.\n"),
    ("SELECT CUSTOMERS WITH NAME LIKE \"...C\"", "C2\nC3\n\n2 items selected.\n"),
    ("SELECT CUSTOMERS WITH CODE = \"GAM\"", "C3\n\n1 item selected.\n"),
    ("SELECT CUSTOMERS WITH ZIPS >= \"75000\" OR WITH ZIPS = \"02103\"",
     "C10\nC3\n\n2 items selected.\n"),
    # explicit ids, in the order given, one not on file; the default columns 1 and 2
    ("LIST CUSTOMERS \"C3\" \"C9\" \"C1\" HDR-SUPP", """\
Cust. Name...... City....

C3    GAMMA INC  BOSTON
'C9' not on file.
C1    ACME CORP  BOSTON

2 items listed.
"""),
    # a heading on two lines (a value mark), date D, lower case, a correlative
    ("LIST CUSTOMERS WITH SINCE ID-SUPP HDR-SUPP OPENED LOWER CODE", """\
Opened..... Lower.... Code
on

03 OCT 2022 acme corp ACM
29 JUN 2025 delta co  DEL
07 JAN 2020 beta llc  BET
31 DEC 1967 gamma inc GAM

4 items listed.
"""),
    ("LIST CUSTOMERS WITH NAME = \"NOBODY\" NAME HDR-SUPP", """\
Cust. Name......

0 items listed.
"""),
    ("LIST DICT CUSTOMERS \"STATE\" \"NAME\" HDR-SUPP ID-SUPP NAME", """\
Name......

D
A

2 items listed.
"""),
]


def tsv(d):
    return "".join(tsv_escape(k.encode()) + "\t" + tsv_escape(v) + "\n"
                   for k, v in d.items()).encode()


class ReportTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.arch = self.start_archiver()
        self.col = self.start_collector(archiver=self.arch.addr, heartbeat_interval="100ms")
        self.cli_ok("create-file", NS, ACC, FILE, collector=self.col)
        self.cli_ok("load", NS, ACC, FILE, "--dict", stdin=tsv(DICT), collector=self.col)
        self.cli_ok("load", NS, ACC, FILE, stdin=tsv(DATA), collector=self.col)
        self.wait_applied()

    def wait_applied(self):
        seq = self.last_seq(collector=self.col)
        wait_until(lambda: (self.archived_ns(self.arch, NS) or {}).get("applied_seq") == seq,
                   30, "the archiver to apply seq %d" % seq)
        return seq

    def query(self, sentence, *extra, daemon=None):
        return self.cli_ok("query", NS, ACC, sentence, *extra,
                           collector=daemon or self.arch).decode()

    def test_golden_reports(self):
        for sentence, want in GOLDEN:
            with self.subTest(sentence=sentence):
                self.assertEqual(self.query(sentence), want)

    def test_page_heading(self):
        seq = self.wait_applied()
        out = self.query("LIST CUSTOMERS NAME")
        first, blank, rest = out.split("\n", 2)
        self.assertRegex(first, r"^CUSTOMERS   at seq %d   \d\d:\d\d:\d\d \d\d [A-Z]{3} \d{4} UTC$"
                         % seq)
        self.assertEqual(blank, "")
        self.assertTrue(rest.startswith("Cust. Name......\n\nC1    ACME CORP\n"), rest)

    def test_site_gives_the_same_reports(self):
        self.wait_applied()
        for sentence, want in GOLDEN:
            with self.subTest(sentence=sentence):
                self.assertEqual(self.query(sentence, daemon=self.col), want)

    def test_csv_equals_json(self):
        sentence = "SORT CUSTOMERS BY NAME NAME CITY BALANCE PHONES ZIPS NOTES NAME"
        out_csv = self.query(sentence, "--csv", "--vm-sep", "|", "--sv-sep", "/")
        out_json = self.query(sentence, "--json", "--sv-sep", "/")
        rows = list(csv.reader(io.StringIO(out_csv, newline="")))
        header, rows = rows[0], rows[1:]
        self.assertEqual(header, ["@ID", "NAME", "CITY", "BALANCE", "PHONES", "ZIPS", "NOTES",
                                  "NAME.2"])
        objs = [json.loads(line) for line in out_json.splitlines()]
        self.assertEqual(len(objs), 5)
        self.assertEqual([list(o.keys()) for o in objs], [header] * 5)
        self.assertEqual(rows, [["|".join(o[k]) for k in header] for o in objs])
        # multivalues and subvalues as arrays, conversions applied
        c10 = [o for o in objs if o["@ID"] == ["C10"]][0]
        self.assertEqual(c10["PHONES"], ["555-4000/EXT 12", "555-4002"])
        self.assertEqual(c10["BALANCE"], ["2,500.00"])
        self.assertEqual(c10["CITY"], ["DALLAS"])
        c1 = [o for o in objs if o["@ID"] == ["C1"]][0]
        self.assertEqual(c1["NOTES"], ["first customer we ever had"])
        # a comma and a quote are quoted in the CSV
        self.cli_ok("put", NS, ACC, FILE, "C5", item('SMITH, "JR"', "reno"), collector=self.col)
        self.wait_applied()
        out_csv = self.query('LIST CUSTOMERS "C5" NAME CITY', "--csv")
        self.assertEqual(out_csv, '@ID,NAME,CITY\r\nC5,"SMITH, ""JR""",RENO\r\n')
        self.assertEqual(list(csv.reader(io.StringIO(out_csv, newline="")))[1],
                         ["C5", 'SMITH, "JR"', "RENO"])
        # COUNT and SELECT in both
        self.assertEqual(self.query('COUNT CUSTOMERS WITH STATE = "TX"', "--json"),
                         '{"count":3}\n')
        self.assertEqual(self.query('SELECT CUSTOMERS WITH STATE = "MA"', "--csv"),
                         "@ID\r\nC1\r\nC3\r\n")

    def test_paged_only_on_a_terminal(self):
        """The columnar report goes through $PAGER when stdout is a terminal
        (util-linux `script` gives it one), never into a pipe or a file."""
        import shutil
        import subprocess
        if not shutil.which("script"):
            self.skipTest("util-linux script is not installed")
        argv = [harness.binary("understudy"), "--addr", self.arch.addr, "query", NS, ACC,
                "LIST CUSTOMERS \"C1\" NAME HDR-SUPP"]
        env = dict(harness.child_env(), PAGER="sed s/^/PAGED:/")
        plain = subprocess.run(argv, capture_output=True, env=env, timeout=30)
        self.assertEqual(plain.returncode, 0, plain.stderr)
        self.assertNotIn(b"PAGED:", plain.stdout)
        tty = subprocess.run(["script", "-qec", " ".join("'%s'" % a for a in argv), "/dev/null"],
                             capture_output=True, env=env, timeout=30)
        self.assertEqual(tty.returncode, 0, tty.stderr)
        lines = tty.stdout.replace(b"\r", b"").decode().splitlines()
        self.assertIn("PAGED:C1    ACME CORP", lines)
        self.assertIn("PAGED:1 item listed.", lines)
        # --csv is never paged
        tty = subprocess.run(["script", "-qec", " ".join("'%s'" % a for a in argv + ["--csv"]),
                              "/dev/null"], capture_output=True, env=env, timeout=30)
        self.assertNotIn(b"PAGED:", tty.stdout)
        self.assertIn(b"C1,ACME CORP", tty.stdout)

    def test_large_report_streams(self):
        """A report of several answer messages (1024 rows each at most):
        every row there once, in order, in the three outputs."""
        n = 3000
        body = {"B%05d" % i: item("N%05d" % i, "reno", "NV", str(i * 7 % n)) for i in range(n)}
        self.cli_ok("load", NS, ACC, FILE, stdin=tsv(body), collector=self.col)
        self.wait_applied()
        out = self.query("SORT CUSTOMERS WITH STATE = \"NV\" BY-DSND BALANCE BALANCE", "--csv")
        rows = list(csv.reader(io.StringIO(out, newline="")))
        self.assertEqual(rows[0], ["@ID", "BALANCE"])
        want = sorted(((i * 7 % n, "B%05d" % i) for i in range(n)), reverse=True)
        self.assertEqual(rows[1:], [[ident, "%d.%02d" % (b // 100, b % 100)] for b, ident in want])
        lines = self.query("LIST CUSTOMERS WITH STATE = \"NV\" NAME", "--json").splitlines()
        self.assertEqual([json.loads(x)["@ID"] for x in lines], [["B%05d" % i] for i in range(n)])
        text = self.query("SELECT CUSTOMERS WITH STATE = \"NV\"")
        self.assertTrue(text.endswith("\n\n%d items selected.\n" % n), text[-100:])
        self.assertEqual(text.split("\n")[:n], ["B%05d" % i for i in range(n)])

    def test_snapshot_stable_while_streaming(self):
        snap = self.cli_json("snapshot", NS, collector=self.arch)
        at = str(snap["snapshot"])
        sentence = "SORT CUSTOMERS BY NAME NAME STATE BALANCE TOTAL BALANCE"
        before = self.query(sentence, "--at", at)
        count_before = self.query("COUNT CUSTOMERS", "--at", at)
        stop = threading.Event()
        errors = []
        written = [0]

        def writer():
            try:
                while not stop.is_set():
                    n = written[0]
                    self.cli_ok("put", NS, ACC, FILE, "N%05d" % n,
                                item("NEW %d" % n, "reno", "NV", "100"), collector=self.col)
                    written[0] = n + 1
            except AssertionError as e:
                errors.append(str(e))

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            wait_until(lambda: written[0] >= 40 or errors, 60, "40 commits on the site")
            # reports at the snapshot while the stream applies
            for _ in range(3):
                self.assertEqual(self.query(sentence, "--at", at), before)
                self.assertEqual(self.query("COUNT CUSTOMERS", "--at", at), count_before)
        finally:
            stop.set()
            t.join(60)
        self.assertEqual(errors, [])
        self.wait_applied()
        self.assertGreater((self.archived_ns(self.arch, NS) or {}).get("applied_seq"),
                           snap["seq"])
        self.assertEqual(self.query(sentence, "--at", at), before)
        self.assertEqual(count_before, "5 items counted.\n")
        now = self.query("COUNT CUSTOMERS")
        self.assertEqual(now, "%d items counted.\n" % (5 + written[0]))

    def test_slow_report_reader_does_not_stall_the_stream(self):
        """A report whose reader stops reading (its stream held open, the
        daemon's query thread waiting on flow control with the snapshot and
        the namespace held) does not hold back the site's stream: commits
        made meanwhile are applied on the archiver; the report, read on
        afterwards, is whole and shows the state when it began."""
        n = 20000
        # 20 MB: more than any flow-control window lets the daemon send ahead
        body = {"S%05d" % i: item("N%05d" % i, "x" * 1000, "SL", str(i)) for i in range(n)}
        self.cli_ok("load", NS, ACC, FILE, stdin=tsv(body), collector=self.col)
        seq0 = self.wait_applied()
        p = Proto()
        ch = p.channel(self.arch.addr)
        self.addCleanup(ch.close)
        stream = p.stub(ch).Query(p.QueryRequest(
            namespace=NS, account=ACC, sentence="LIST CUSTOMERS WITH STATE = \"SL\" NAME CITY"),
            timeout=120)
        first = next(stream)
        self.assertEqual(first.seq, seq0)
        # the reader pauses; the site commits 50 times; the archiver applies them all
        for i in range(50):
            self.cli_ok("put", NS, ACC, FILE, "SLOW%02d" % i, item("late", "x", "SL"),
                        collector=self.col)
        seq1 = self.wait_applied()
        self.assertEqual(seq1, seq0 + 50)
        rows = list(first.rows)
        last = first
        for m in stream:
            rows.extend(m.rows)
            last = m
        self.assertTrue(last.done)
        self.assertEqual(last.count, n)
        self.assertEqual([r.id for r in rows], [b"S%05d" % i for i in range(n)])

    def test_refusals(self):
        seq = self.wait_applied()
        cases = [
            # (sentence, extra args, exit, words the message must hold)
            ("LIST CUSTOMERS WITH STATE = CA", [], 1, ["'CA'", "position 29"]),
            ("DELETE CUSTOMERS", [], 1, ["'DELETE'", "position 1"]),
            ("LIST CUSTOMERS CITTY", [], 1, ["'CITTY'", "dictionary"]),
            ("LIST CUSTOMERS BY", [], 1, ["BY"]),
            ("COUNT CUSTOMERS NAME", [], 1, ["COUNT"]),
            ("LIST NOFILE", [], 3, ["NOFILE", "does not exist"]),
            ("LIST CUSTOMERS", ["--at", "999"], 3, ["999"]),
            ("LIST CUSTOMERS", ["--at", "x"], 2, ["--at"]),
            ("LIST CUSTOMERS", ["--csv", "--json"], 2, ["--csv"]),
        ]
        for sentence, extra, code, words in cases:
            with self.subTest(sentence=sentence, extra=extra):
                rc, out, err = self.cli("query", NS, ACC, sentence, *extra, collector=self.arch)
                self.assertEqual(rc, code, err)
                self.assertEqual(out, b"")
                self.assert_one_line(err, sentence)
                for w in words:
                    self.assertIn(w, err.decode())
        rc, out, err = self.cli("query", "no-such-ns", ACC, "LIST CUSTOMERS", collector=self.arch)
        self.assertEqual(rc, 3, err)
        self.assert_one_line(err)
        rc, out, err = self.cli("query", NS, ACC, collector=self.arch)
        self.assertEqual(rc, 2)
        # nothing changed anywhere
        self.assertEqual(self.last_seq(collector=self.col), seq)
        self.assertEqual(self.archived_ns(self.arch, NS)["applied_seq"], seq)

    def test_grpcio_client(self):
        p = Proto()
        ch = p.channel(self.arch.addr)
        self.addCleanup(ch.close)
        stub = p.stub(ch)
        seq = self.wait_applied()
        msgs = list(stub.Query(p.QueryRequest(
            namespace=NS, account=ACC,
            sentence="SORT CUSTOMERS WITH STATE = \"TX\" BY NAME BREAK-ON STATE PHONES "
                     "TOTAL BALANCE OPENED"), timeout=30))
        head, last = msgs[0], msgs[-1]
        self.assertEqual(head.verb, "SORT")
        self.assertEqual(head.file, FILE)
        self.assertEqual(head.seq, seq)
        self.assertEqual([c.name for c in head.columns],
                         ["@ID", "STATE", "PHONES", "BALANCE", "OPENED"])
        self.assertEqual([list(c.heading) for c in head.columns],
                         [[b"Cust"], [b"St"], [b"Phones"], [b"Balance"], [b"Opened", b"on"]])
        self.assertEqual([(c.width, c.justify, c.total, c.break_on) for c in head.columns],
                         [(5, "L", False, False), (2, "L", False, True),
                          (9, "L", False, False), (10, "R", True, False),
                          (11, "R", False, False)])
        self.assertTrue(last.done)
        self.assertEqual(last.count, 3)
        rows = [r for m in msgs for r in m.rows]
        R = p.QueryRow
        self.assertEqual([(R.Kind.Name(r.kind), r.id) for r in rows],
                         [("ITEM", b"C2"), ("ITEM", b"C10"), ("ITEM", b"C4"), ("BREAK", b""),
                          ("TOTAL", b"")])
        self.assertEqual([list(c.values) for c in rows[1].cells],
                         [[b"C10"], [b"TX"], [b"555-4000" + SVM + b"EXT 12", b"555-4002"],
                          [b"2,500.00"], [b"29 JUN 2025"]])
        self.assertEqual([list(c.values) for c in rows[3].cells],
                         [[b""], [b"***"], [b""], [b"2,450.00"], [b""]])
        self.assertEqual([list(c.values) for c in rows[4].cells],
                         [[b"***"], [b""], [b""], [b"2,450.00"], [b""]])
        # the codes of refusals
        for sentence, code in (("LIST CUSTOMERS WITH", grpc.StatusCode.INVALID_ARGUMENT),
                               ("LIST CUSTOMERS NOPE", grpc.StatusCode.INVALID_ARGUMENT),
                               ("LIST NOFILE", grpc.StatusCode.NOT_FOUND)):
            with self.assertRaises(grpc.RpcError) as cm:
                list(stub.Query(p.QueryRequest(namespace=NS, account=ACC, sentence=sentence),
                                timeout=30))
            self.assertEqual(cm.exception.code(), code, sentence)


if __name__ == "__main__":
    harness.main()
