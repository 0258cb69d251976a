"""test_hostile_archiver.py - a site against an archiver that lies (issue 8:
every bound from a peer is checked before it is stored or shown).

python3-grpcio plays the archiver (no real archiver sends these: this is the
one peer that cannot be had otherwise): it welcomes the site, then
acknowledges seqs the site never sent it. A real collector must not take
them: its acked_seq (what lets it drop journal and answer sync commits) stays
within what it sent, and its journal stays whole.
"""

import threading
from concurrent import futures

import harness
from harness import Proto, SystemTest, wait_until

NS = "site-a"


class LyingArchiver:
    """Replication/Push: Welcome at seq 0, then Progress{applied, durable}
    = lie for every frame the site sends."""

    def __init__(self, proto, lie):
        import grpc
        self.proto = proto
        self.lie = lie
        self.frames = 0
        self.lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler("understudy.v1.Replication", {
            "Push": grpc.stream_stream_rpc_method_handler(
                self.push, request_deserializer=proto.Frame.FromString,
                response_serializer=lambda m: m.SerializeToString())})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def push(self, frames, context):
        p = self.proto
        for f in frames:
            with self.lock:
                self.frames += 1
            if f.WhichOneof("body") == "hello":
                yield p.Ack(welcome=p.Welcome(generation=1, applied_seq=0, durable_seq=0,
                                              node_id="liar", chain=0))
            else:
                yield p.Ack(progress=p.Progress(applied_seq=self.lie, durable_seq=self.lie))

    def stop(self):
        self.server.stop(0)


class HostileArchiverTest(SystemTest):

    def test_acks_beyond_what_was_sent_are_refused(self):
        proto = Proto()
        liar = LyingArchiver(proto, lie=1000000)
        self.addCleanup(liar.stop)
        col = self.start_collector(namespace=NS, archiver="127.0.0.1:%d" % liar.port,
                                   heartbeat_interval="100ms", commit="async")
        self.cli_ok("create-file", NS, "ACC", "F")
        for i in range(5):
            self.cli_ok("put", NS, "ACC", "F", "k%d" % i, "v")
        # the site has sent frames and heartbeats and heard the lie several times
        wait_until(lambda: liar.frames >= 6, 30, "the site to send to the liar")
        st = self.cli_json("status")
        self.assertEqual(st["last_seq"], 6)
        self.assertLessEqual(st["archivers"][0]["acked_seq"], st["last_seq"],
                             "the site took an ack beyond its own last seq")
        self.assertEqual(st["journal_first_seq"], 1, "the site dropped journal on a lie")
        self.assertTrue(col.is_running())


if __name__ == "__main__":
    harness.main()
