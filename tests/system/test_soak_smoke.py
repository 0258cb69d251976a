"""test_soak_smoke.py - tools/soak itself works: three fault cycles (kill -9 of
the archiver or of a collector, a cut, reset, stall or block through a fault
proxy) under load against three sites, then its check of every acknowledged
update, passes. The disk-full episode is left out: it mounts a tmpfs (root).
The soak proper (hundreds of cycles) is run by hand: see the top of tools/soak.
"""

import os
import subprocess
import sys

import harness
from harness import SOURCE_DIR, BIN_DIR, Proto, SystemTest, child_env

SOAK_TIMEOUT_S = 240


class SoakSmokeTest(SystemTest):

    def test_three_cycles(self):
        Proto()  # skipped without python3-grpcio or the descriptor set
        for prog in ("understudy-archiver", "understudy-collector", "understudy-faultproxy",
                     "understudy-inspect"):
            harness.binary(prog)
        r = subprocess.run(
            ["/usr/bin/python3", os.path.join(SOURCE_DIR, "tools", "soak"), "--cycles", "3",
             "--seed", str(self.seed), "--bin-dir", BIN_DIR,
             "--faults", "kill-archiver,kill-collector,cut", "--quiet"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=SOAK_TIMEOUT_S,
            env=child_env())
        out = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0:
            sys.stderr.write(out[-8000:] + r.stderr.decode("utf-8", "replace")[-4000:])
        self.assertEqual(r.returncode, 0, "tools/soak failed (seed %d)" % self.seed)
        self.assertIn("result            PASS", out)


if __name__ == "__main__":
    harness.main()
