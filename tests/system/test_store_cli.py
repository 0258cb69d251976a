"""test_store_cli.py - the data commands of `understudy` against a real collector.

Checks the CLI contract: exact binary round trips (marks and every byte value),
DATA and DICT kept apart, list order and --limit, file operations, logged flags,
bad input refused with exit 1, one stderr line and nothing changed, JSON shapes
and usage errors.
"""

import json
import re

import harness
from harness import SystemTest, escape_id, unescape_id

NS = "site-a"


def hex_upper(line):
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: "\\x" + m.group(1).upper(), line)


class StoreCliTest(SystemTest):

    def setUp(self):
        super().setUp()
        self.c = self.start_collector()

    def create(self, account, file, *extra):
        self.cli_ok("create-file", NS, account, file, *extra)

    def get(self, account, file, id_, *extra):
        return self.cli("get", NS, account, file, id_, *extra)

    def assert_body(self, account, file, id_, body, *extra):
        rc, out, err = self.get(account, file, id_, *extra)
        self.assertEqual(rc, 0, "get %r: exit %d %r" % (id_, rc, err))
        self.assertEqual(out, body, "get %r returned other bytes" % (id_,))

    def assert_absent(self, account, file, id_, *extra):
        rc, out, err = self.get(account, file, id_, *extra)
        self.assertEqual(rc, 3, "get %r: expected exit 3 (absent), got %d %r" % (id_, rc, err))
        self.assertEqual(out, b"")

    # ---- round trips

    def test_binary_round_trip_argv_and_stdin(self):
        self.create("ACC", "BIN")
        bodies = {
            "marks": b"NAME\xfeVAL1\xfdVAL2\xfcSUB\xfe\xfe\xfd\xfc",
            "every-byte": bytes(range(1, 256)),
            "empty": b"",
            # BODY is the argument's literal bytes: backslash escapes are not parsed
            "literal-escapes": b"lit\\xFE\\\\n\\t",
            "trailing-newline": b"line\n",
        }
        for name, body in bodies.items():
            self.cli_ok("put", NS, "ACC", "BIN", "argv-" + name, body)
        # stdin also carries NUL, which argv cannot
        stdin_bodies = dict(bodies)
        stdin_bodies["with-nul"] = bytes(range(256)) * 3 + b"\x00"
        stdin_bodies["large"] = bytes((i * 7 + 3) % 256 for i in range(200000))
        for name, body in stdin_bodies.items():
            self.cli_ok("put", NS, "ACC", "BIN", "stdin-" + name, stdin=body)
        for name, body in bodies.items():
            self.assert_body("ACC", "BIN", "argv-" + name, body)
        for name, body in stdin_bodies.items():
            self.assert_body("ACC", "BIN", "stdin-" + name, body)
        # an overwrite replaces the whole body
        self.cli_ok("put", NS, "ACC", "BIN", "argv-marks", b"short")
        self.assert_body("ACC", "BIN", "argv-marks", b"short")

    def test_data_and_dict_are_separate(self):
        self.create("ACC", "SEP")
        self.cli_ok("put", NS, "ACC", "SEP", "K1", b"data\xfe1")
        self.cli_ok("put", NS, "ACC", "SEP", "K1", b"dict\xfe1", "--dict")
        self.cli_ok("put", NS, "ACC", "SEP", "ONLYDICT", b"d", "--dict")
        self.assert_body("ACC", "SEP", "K1", b"data\xfe1")
        self.assert_body("ACC", "SEP", "K1", b"dict\xfe1", "--dict")
        self.assert_absent("ACC", "SEP", "ONLYDICT")
        self.assert_body("ACC", "SEP", "ONLYDICT", b"d", "--dict")
        self.assertEqual(self.list_ids(NS, "ACC", "SEP"), [b"K1"])
        self.assertEqual(self.list_ids(NS, "ACC", "SEP", "--dict"), [b"K1", b"ONLYDICT"])
        self.cli_ok("delete", NS, "ACC", "SEP", "K1", "--dict")
        self.assert_absent("ACC", "SEP", "K1", "--dict")
        self.assert_body("ACC", "SEP", "K1", b"data\xfe1")
        info = self.files(NS, "ACC")[("ACC", "SEP")]
        self.assertEqual((info["data_items"], info["dict_items"]), (1, 1))

    # ---- list

    def test_list_byte_order_escapes_and_limit(self):
        self.create("ACC", "ORD")
        ids = [b"b", b"a", b"B", b"A", b"9", b"10", b"1", b"a b", b"Z~", b"\x80hi",
               b"back\\slash", b"tab\tid", b"\x01ctl", b"\xfbhigh", b"aa"]
        for i in ids:
            self.cli_ok("put", NS, "ACC", "ORD", i, b"x")
        expected = sorted(ids)
        self.assertEqual(expected[:7], [b"\x01ctl", b"1", b"10", b"9", b"A", b"B", b"Z~"])
        out = self.cli_ok("list", NS, "ACC", "ORD")
        lines = out.decode("ascii").splitlines()  # escaped: printable ASCII only
        self.assertEqual([unescape_id(x) for x in lines], expected)
        # the escapes themselves: backslash doubled, non-printable bytes as \xNN
        # (hex digits in either case)
        self.assertEqual([hex_upper(x) for x in lines], [escape_id(i) for i in expected])
        self.assertEqual(self.list_ids(NS, "ACC", "ORD", "--limit", "3"), expected[:3])
        self.assertEqual(self.list_ids(NS, "ACC", "ORD", "--limit", "100"), expected)
        j = self.cli_json("list", NS, "ACC", "ORD", "--limit", "5")
        self.assertEqual(list(j.keys()), ["ids"])
        self.assertEqual([unescape_id(x) for x in j["ids"]], expected[:5])
        # an empty file lists nothing
        self.create("ACC", "EMPTY")
        self.assertEqual(self.cli_ok("list", NS, "ACC", "EMPTY"), b"")
        self.assertEqual(self.cli_json("list", NS, "ACC", "EMPTY"), {"ids": []})

    # ---- get / delete

    def test_get_missing_and_delete(self):
        self.create("ACC", "DEL")
        self.assert_absent("ACC", "DEL", "nope")
        self.assert_absent("ACC", "DEL", "nope", "--dict")
        self.cli_ok("put", NS, "ACC", "DEL", "K", b"v")
        self.assert_body("ACC", "DEL", "K", b"v")
        before = self.last_seq()
        self.cli_ok("delete", NS, "ACC", "DEL", "K")
        self.assertEqual(self.last_seq(), before + 1)
        self.assert_absent("ACC", "DEL", "K")
        self.assertEqual(self.list_ids(NS, "ACC", "DEL"), [])
        # deleting an absent item succeeds
        self.cli_ok("delete", NS, "ACC", "DEL", "K")
        self.cli_ok("delete", NS, "ACC", "DEL", "never-was", "--dict")

    # ---- file operations

    def test_file_operations(self):
        self.create("ACC", "F1")
        self.create("ACC", "F2")
        rc, out, err = self.cli("create-file", NS, "ACC", "F1")
        self.assertEqual(rc, 1, "duplicate create-file: %r" % err)
        self.assert_one_line(err, "duplicate create-file")
        for f in ("F1", "F2"):
            self.cli_ok("put", NS, "ACC", f, "D1", b"d1")
            self.cli_ok("put", NS, "ACC", f, "D2", b"d2")
            self.cli_ok("put", NS, "ACC", f, "X1", b"x1", "--dict")
        # clear-file empties only the DATA section of that file
        self.cli_ok("clear-file", NS, "ACC", "F1")
        self.assertEqual(self.list_ids(NS, "ACC", "F1"), [])
        self.assertEqual(self.list_ids(NS, "ACC", "F1", "--dict"), [b"X1"])
        self.assertEqual(self.list_ids(NS, "ACC", "F2"), [b"D1", b"D2"])
        # clear-file --dict empties only the DICT section
        self.cli_ok("put", NS, "ACC", "F1", "D3", b"d3")
        self.cli_ok("clear-file", NS, "ACC", "F1", "--dict")
        self.assertEqual(self.list_ids(NS, "ACC", "F1", "--dict"), [])
        self.assertEqual(self.list_ids(NS, "ACC", "F1"), [b"D3"])
        self.assertEqual(self.list_ids(NS, "ACC", "F2", "--dict"), [b"X1"])
        info = self.files(NS, "ACC")
        self.assertEqual((info[("ACC", "F1")]["data_items"], info[("ACC", "F1")]["dict_items"]),
                         (1, 0))
        self.assertEqual((info[("ACC", "F2")]["data_items"], info[("ACC", "F2")]["dict_items"]),
                         (2, 1))
        # delete-file removes both sections; then the file is not found
        self.cli_ok("delete-file", NS, "ACC", "F2")
        self.assert_absent("ACC", "F2", "D1")
        self.assert_absent("ACC", "F2", "X1", "--dict")
        self.assertNotIn(("ACC", "F2"), self.files(NS, "ACC"))
        rc, _, err = self.cli("delete-file", NS, "ACC", "F2")
        self.assertEqual(rc, 3, "delete-file of a missing file: %r" % err)
        # a write to a file that does not exist: NOT_FOUND, exit 3, nothing journaled
        before = self.last_seq()
        for args in (("put", NS, "ACC", "F2", "D1", b"again"),
                     ("put", NS, "ACC", "NEVER", "D1", b"v"),
                     ("put", NS, "NOACC", "F1", "D1", b"v"),
                     ("delete", NS, "ACC", "NEVER", "D1")):
            rc, _, err = self.cli(*args)
            self.assertEqual(rc, 3, "%s to a missing file: exit %d %r" % (args[0], rc, err))
            self.assert_one_line(err, "%s to a missing file" % args[0])
        self.assertEqual(self.last_seq(), before)
        self.assert_absent("ACC", "F2", "D1")
        # the file can be created again, empty
        self.create("ACC", "F2")
        self.assertEqual(self.list_ids(NS, "ACC", "F2"), [])
        self.assertEqual(self.list_ids(NS, "ACC", "F2", "--dict"), [])

    # ---- logged flags

    def files_text(self, account=None):
        """`understudy files NS [ACCOUNT]` text -> {(account, file): (state, data, dict)}."""
        out = self.cli_ok(*(["files", NS] + ([account] if account else [])))
        rows = {}
        for line in out.decode().splitlines():
            cols = line.split("\t")
            self.assertEqual(len(cols), 5, "files line %r" % line)
            self.assertIn(cols[2], ("logged", "unlogged"))
            rows[(cols[0], cols[1])] = (cols[2], int(cols[3]), int(cols[4]))
        return rows

    def test_logged_flags(self):
        self.create("LOG", "UNL", "--unlogged")
        self.create("LOG", "ON")
        before = self.last_seq()
        j = self.cli_json("put", NS, "LOG", "UNL", "K", b"v\xfe1")
        self.assertEqual(j, {"seq": 0})
        self.assertEqual(self.last_seq(), before, "an unlogged put moved last_seq")
        self.assert_body("LOG", "UNL", "K", b"v\xfe1")
        self.assertEqual(self.files_text("LOG"),
                         {("LOG", "UNL"): ("unlogged", 1, 0), ("LOG", "ON"): ("logged", 0, 0)})
        f = self.files(NS, "LOG")
        self.assertEqual((f[("LOG", "UNL")]["logged"], f[("LOG", "UNL")]["account_logged"]),
                         (False, True))
        # a logged put gets the next seq
        j = self.cli_json("put", NS, "LOG", "ON", "K", b"v")
        self.assertEqual(j, {"seq": before + 1})
        # file flag on / off
        self.cli_ok("set-logging", NS, "LOG", "UNL", "on")
        self.assertEqual(self.files_text("LOG")[("LOG", "UNL")][0], "logged")
        self.cli_ok("set-logging", NS, "LOG", "ON", "off")
        self.assertEqual(self.files_text("LOG")[("LOG", "ON")][0], "unlogged")
        f = self.files(NS, "LOG")[("LOG", "ON")]
        self.assertEqual((f["logged"], f["account_logged"]), (False, True))
        self.cli_ok("set-logging", NS, "LOG", "ON", "on")
        # account flag off: every file of it is unlogged, the files' own flags stay on
        self.cli_ok("set-logging", NS, "LOG", "off")
        rows = self.files_text("LOG")
        self.assertEqual({k: v[0] for k, v in rows.items()},
                         {("LOG", "UNL"): "unlogged", ("LOG", "ON"): "unlogged"})
        f = self.files(NS, "LOG")
        for key in (("LOG", "UNL"), ("LOG", "ON")):
            self.assertEqual((f[key]["logged"], f[key]["account_logged"]), (True, False), key)
        mid = self.last_seq()
        self.assertEqual(self.cli_json("put", NS, "LOG", "ON", "K2", b"w"), {"seq": 0})
        self.assertEqual(self.last_seq(), mid)
        self.cli_ok("set-logging", NS, "LOG", "on")
        self.assertEqual({k: v[0] for k, v in self.files_text("LOG").items()},
                         {("LOG", "UNL"): "logged", ("LOG", "ON"): "logged"})
        after = self.last_seq()
        j = self.cli_json("put", NS, "LOG", "ON", "K3", b"x")
        self.assertEqual(j, {"seq": after + 1})
        self.assert_body("LOG", "ON", "K2", b"w")

    # ---- bad input

    def test_bad_input_changes_nothing(self):
        c = self.start_collector(name="small", max_body="1KiB")
        self.cli_ok("create-file", NS, "ACC", "GOOD", collector=c)
        self.cli_ok("put", NS, "ACC", "GOOD", "keep", b"kept", collector=c)
        before = self.last_seq(collector=c)
        long_name = "N" * 65
        cases = [
            ("namespace with upper case", ("put", "Site-A", "ACC", "GOOD", "k1", b"v")),
            ("namespace with a slash", ("put", "site/a", "ACC", "GOOD", "k1", b"v")),
            ("namespace not served", ("put", "site-b", "ACC", "GOOD", "k1", b"v")),
            ("account with a space", ("put", NS, "AC C", "GOOD", "k1", b"v")),
            ("account of 65 chars", ("put", NS, long_name, "GOOD", "k1", b"v")),
            ("empty account", ("put", NS, "", "GOOD", "k1", b"v")),
            ("file with a slash", ("put", NS, "ACC", "GO/OD", "k1", b"v")),
            ("file of 65 chars", ("put", NS, "ACC", long_name, "k1", b"v")),
            ("id with AM 0xFE", ("put", NS, "ACC", "GOOD", b"k\xfe1", b"v")),
            ("id with SVM 0xFC", ("put", NS, "ACC", "GOOD", b"\xfck1", b"v")),
            ("id with 0xFF", ("put", NS, "ACC", "GOOD", b"k1\xff", b"v")),
            ("empty id", ("put", NS, "ACC", "GOOD", "", b"v")),
            ("id of 1025 bytes", ("put", NS, "ACC", "GOOD", "i" * 1025, b"v")),
            ("body over max_body (argv)", ("put", NS, "ACC", "GOOD", "k1", b"b" * 1025)),
            ("create-file with a bad name", ("create-file", NS, "ACC", "BAD NAME")),
            ("create-file in a namespace not served", ("create-file", "site-b", "ACC", "NEW")),
            ("delete with an id with 0xFD", ("delete", NS, "ACC", "GOOD", b"k\xfd")),
        ]
        for what, args in cases:
            with self.subTest(what):
                rc, out, err = self.cli(*args, collector=c)
                self.assertEqual(rc, 1, "%s: expected exit 1, got %d, stderr %r" % (what, rc, err))
                self.assert_one_line(err, what)
                self.assertEqual(out, b"", what)
        with self.subTest("body over max_body (stdin)"):
            rc, out, err = self.cli("put", NS, "ACC", "GOOD", "k1", stdin=b"\xfe" * 2048,
                                    collector=c)
            self.assertEqual(rc, 1, "stdin body over max_body: exit %d %r" % (rc, err))
            self.assert_one_line(err, "stdin body over max_body")
        # nothing changed: journal position, items, files
        self.assertEqual(self.last_seq(collector=c), before)
        self.assertEqual(self.list_ids(NS, "ACC", "GOOD", collector=c), [b"keep"])
        self.assertEqual(self.list_ids(NS, "ACC", "GOOD", "--dict", collector=c), [])
        self.assertEqual(set(self.files(NS, collector=c)), {("ACC", "GOOD")})
        rc, out, _ = self.cli("get", NS, "ACC", "GOOD", "keep", collector=c)
        self.assertEqual((rc, out), (0, b"kept"))
        # the limits themselves are accepted
        self.cli_ok("put", NS, "ACC", "GOOD", "i" * 1024, b"b" * 1024, collector=c)
        rc, out, _ = self.cli("get", NS, "ACC", "GOOD", "i" * 1024, collector=c)
        self.assertEqual((rc, out), (0, b"b" * 1024))
        self.cli_ok("create-file", NS, "A" * 64, "F" * 64, collector=c)
        self.cli_ok("put", NS, "A" * 64, "F" * 64, b"\x01\xfb", b"", collector=c)
        self.assertEqual(self.last_seq(collector=c), before + 2 + 1)

    # ---- JSON shapes

    def test_json_shapes(self):
        st = self.status()
        for key in ("node", "namespace", "role", "generation", "last_seq", "commit_mode",
                    "archivers"):
            self.assertIn(key, st)
        self.assertEqual((st["node"], st["namespace"], st["role"], st["generation"],
                          st["commit_mode"], st["archivers"]),
                         ("collector", NS, "primary", 1, "local", []))
        self.assertIsInstance(st["last_seq"], int)
        # `status --json` after the command is the same object
        out = self.cli_ok("status", "--json")
        self.assertEqual(json.loads(out), st)
        seq0 = st["last_seq"]
        # create-file is one journaled operation
        self.cli_ok("create-file", NS, "J", "F")
        self.assertEqual(self.last_seq(), seq0 + 1)
        j = self.cli_json("put", NS, "J", "F", "K", b"v")
        self.assertEqual(j, {"seq": seq0 + 2})
        self.assertEqual(self.last_seq(), seq0 + 2)
        j = self.cli_json("put", NS, "J", "F", "K", b"v", "--dict")
        self.assertEqual(j, {"seq": seq0 + 3})
        j = self.cli_json("delete", NS, "J", "F", "K")
        self.assertEqual(j, {"seq": seq0 + 4})
        j = self.cli_json("load", NS, "J", "F", stdin=b"a\t1\nb\t2\nc\t\\xFE\n")
        # {"seq": N}; extra fields (the collector's CLI adds "items") extend it
        self.assertEqual(j["seq"], seq0 + 7)
        self.assertEqual(j.get("items", 3), 3)
        self.assertEqual(self.cli_json("list", NS, "J", "F"), {"ids": ["a", "b", "c"]})
        files = self.cli_json("files", NS)
        self.assertEqual(list(files), ["files"])
        keys = ("account", "file", "logged", "account_logged", "data_items", "dict_items")
        self.assertEqual(len(files["files"]), 1)
        self.assertEqual({k: files["files"][0].get(k) for k in keys},
                         {"account": "J", "file": "F", "logged": True, "account_logged": True,
                          "data_items": 3, "dict_items": 1})
        self.assertEqual(self.cli_ok("files", NS), b"J\tF\tlogged\t3\t1\n")
        # without --json, put/delete/load print nothing
        self.assertEqual(self.cli_ok("put", NS, "J", "F", "K", b"v"), b"")
        self.assertEqual(self.cli_ok("delete", NS, "J", "F", "K"), b"")
        self.assertEqual(self.cli_ok("load", NS, "J", "F", stdin=b"d\t4\n"), b"")

    # ---- usage

    def test_usage_errors_exit_2(self):
        rc, out, _ = self.cli("--help")
        self.assertEqual(rc, 0)
        self.assertTrue(out.strip(), "--help printed nothing on stdout")
        cases = [
            ("no command", ()),
            ("unknown command", ("frobnicate",)),
            ("unknown option", ("status", "--bogus")),
            ("put without an id", ("put", NS, "ACC", "F")),
            ("get with too many arguments", ("get", NS, "ACC", "F", "K", "extra")),
            ("list with a bad --limit", ("list", NS, "ACC", "F", "--limit", "many")),
            ("set-logging with a bad state", ("set-logging", NS, "ACC", "F", "maybe")),
            ("load with a bad --batch", ("load", NS, "ACC", "F", "--batch", "0")),
            ("files without a namespace", ("files",)),
        ]
        for what, args in cases:
            with self.subTest(what):
                rc, out, err = self.cli(*args)
                self.assertEqual(rc, 2, "%s: expected exit 2, got %d, stderr %r" % (what, rc, err))
                self.assertTrue(err.strip(), "%s: nothing on stderr" % what)


if __name__ == "__main__":
    harness.main()
