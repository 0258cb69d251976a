"""test_load.py - `understudy load`: a 50,000-item bulk load and malformed input.

The big load checks every id (list), the file counts, a random sample of bodies
byte for byte, that the journal grew by exactly one entry per item, and that the
store is clean (understudy-inspect) after a SIGTERM.

Malformed input: the load stops with exit 1 and one stderr line naming the
input line. What this test asserts about partial effects (batches commit one by
one, so earlier whole batches may be in): the visible items are exactly the
items of the first K input lines, K a multiple of --batch and K <= the number
of lines before the batch that holds the bad line; so nothing of the failing
batch is visible; and status last_seq grew by exactly K.
"""


import harness
from harness import SystemTest, run_inspect, tsv_escape

NS = "site-a"
N_ITEMS = 50000
N_SAMPLE = 60


class LoadTest(SystemTest):

    def make_items(self):
        """N_ITEMS (id, body) pairs of varied shapes, in input order."""
        rng = self.rng
        items = []
        for i in range(N_ITEMS):
            ident = b"L%05d" % i
            pad = rng.choice((0, 0, 1, 3, 10, 40, 200))
            ident += b"x" * pad
            if i % 97 == 0:
                ident += b"\ttab"
            if i % 101 == 0:
                ident += b"back\\slash"
            if i % 103 == 0:
                ident += bytes([0xA0, 0x80, 0xFB])
            if i % 89 == 0:
                ident = bytes([0x01 + i % 30]) + ident
            n_attrs = rng.randrange(0, 8)
            attrs = []
            for _ in range(n_attrs):
                values = [bytes(rng.choice(b"ABCDEFGHIJ0123456789 ") for _ in
                                range(rng.randrange(0, 12)))
                          for _ in range(rng.randrange(1, 4))]
                attrs.append(b"\xfd".join(values))
            body = b"\xfe".join(attrs)
            if i % 53 == 0:
                body += b"\xfcsub\n\r\t\\end"
            if i % 211 == 0:
                body = bytes(range(1, 256))
            items.append((ident, body))
        return items

    def tsv(self, items):
        return "".join("%s\t%s\n" % (tsv_escape(i), tsv_escape(b)) for i, b in items).encode()

    def test_load_50000(self):
        c = self.start_collector()
        self.cli_ok("create-file", NS, "ACC", "BULK")
        seq0 = self.last_seq()
        items = self.make_items()
        self.assertEqual(len({i for i, _ in items}), N_ITEMS)
        j = self.cli_json("load", NS, "ACC", "BULK", stdin=self.tsv(items))
        self.assertEqual(j["seq"], seq0 + N_ITEMS)
        self.assertEqual(j.get("items", N_ITEMS), N_ITEMS)
        self.assertEqual(self.last_seq(), seq0 + N_ITEMS,
                         "the load must journal exactly one entry per item")
        ids = self.list_ids(NS, "ACC", "BULK")
        self.assertEqual(len(ids), N_ITEMS)
        self.assertEqual(ids, sorted(i for i, _ in items))
        self.assertEqual(self.list_ids(NS, "ACC", "BULK", "--dict"), [])
        info = self.files(NS, "ACC")[("ACC", "BULK")]
        self.assertEqual((info["data_items"], info["dict_items"]), (N_ITEMS, 0))
        for ident, body in self.rng.sample(items, N_SAMPLE) + [items[0], items[211], items[-1]]:
            rc, out, err = self.cli("get", NS, "ACC", "BULK", ident)
            self.assertEqual(rc, 0, "get %r: %r" % (ident, err))
            self.assertEqual(out, body, "body of %r" % (ident,))
        # a second load of the same ids overwrites, into DICT this time
        few = [(i, b + b"\xfe2") for i, b in items[:1500]]
        self.cli_ok("load", NS, "ACC", "BULK", "--dict", "--batch", "700", stdin=self.tsv(few))
        self.assertEqual(self.last_seq(), seq0 + N_ITEMS + 1500)
        info = self.files(NS, "ACC")[("ACC", "BULK")]
        self.assertEqual((info["data_items"], info["dict_items"]), (N_ITEMS, 1500))
        rc, out, _ = self.cli("get", NS, "ACC", "BULK", few[1499][0], "--dict")
        self.assertEqual((rc, out), (0, few[1499][1]))
        # the store is clean once the collector stops
        self.assertEqual(c.terminate(), 0, "collector exit status after SIGTERM")
        ins = run_inspect(c.data_dir)
        self.assertEqual((ins["gaps"], ins["bad_records"]), (0, 0), ins)
        self.assertEqual(ins["last_seq"], seq0 + N_ITEMS + 1500, ins)
        self.assertEqual(ins["last_seq"], ins["position_seq"], ins)
        self.assertEqual(ins["items"], N_ITEMS + 1500, ins)

    def assert_failed_load(self, lines, bad_line, batch, what, names_line=True):
        """Loads lines (bytes, one per input line) into a fresh file and checks
        the partial-effect rule in the module comment; names_line: stderr must
        name the bad line's number (malformed TSV; an invalid id may instead be
        refused by the collector for its whole batch)."""
        file = "BAD%d" % bad_line
        self.cli_ok("create-file", NS, "ACC", file)
        seq0 = self.last_seq()
        rc, out, err = self.cli("load", NS, "ACC", file, "--batch", str(batch),
                                stdin=b"".join(x + b"\n" for x in lines))
        self.assertEqual(rc, 1, "%s: exit %d, stderr %r" % (what, rc, err))
        self.assert_one_line(err, what)
        if names_line:
            self.assertRegex(err.decode("utf-8", "replace"), r"(?<![0-9])%d(?![0-9])" % bad_line,
                             "%s: stderr does not name line %d" % (what, bad_line))
        ids = self.list_ids(NS, "ACC", file)
        k = len(ids)
        done_before_bad = (bad_line - 1) // batch * batch
        self.assertEqual(k % batch, 0, "%s: %d items visible, not whole batches" % (what, k))
        self.assertLessEqual(k, done_before_bad, "%s: items of the failing batch visible" % what)
        self.assertEqual(ids, sorted(x.split(b"\t")[0] for x in lines[:k]), what)
        self.assertEqual(self.last_seq(), seq0 + k, "%s: journal moved by other than %d" % (what, k))

    def test_malformed_input(self):
        self.start_collector()
        good = [b"G%05d\tbody\\xFE%d" % (i, i) for i in range(1, 3001)]
        # no tab on line 2501 (batch 3 of 1000)
        lines = list(good)
        lines[2500] = b"G02501 has no tab"
        self.assert_failed_load(lines, 2501, 1000, "line without a tab")
        # a bad escape on line 7 (first batch)
        lines = list(good[:20])
        lines[6] = b"G00007\tbad \\xZZ escape"
        self.assert_failed_load(lines, 7, 1000, "bad \\x escape")
        # a truncated escape at the end of line 12, in the id
        lines = list(good[:20])
        lines[11] = b"G00012\\x4\tbody"
        self.assert_failed_load(lines, 12, 5, "truncated escape")
        # an id holding a mark byte (escaped) on line 1500, batch 2 of 1000
        lines = list(good[:2000])
        lines[1499] = b"G01500\\xFEmark\tbody"
        self.assert_failed_load(lines, 1500, 1000, "id with a mark byte", names_line=False)
        # an empty id on line 3
        lines = list(good[:10])
        lines[2] = b"\tbody"
        self.assert_failed_load(lines, 3, 1000, "empty id", names_line=False)


if __name__ == "__main__":
    harness.main()
