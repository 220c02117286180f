#!/usr/bin/env python3
"""peer.py: the strong Python consumer sigflow is measured against.

What a capable engineer would write today to do sigflow's job in Python:
confluent_kafka for Kafka, msgspec to decode the events straight into typed
structs, numpy to assemble and normalize the feature matrix, ONNX Runtime for
the same MLP (the shipped model exported to ONNX), the batch split over worker
threads (ONNX Runtime releases the GIL, one kernel thread each), double
buffering (batch k+1 is consumed, decoded and assembled while batch k runs the
forward pass), and at-least-once: a batch's offsets are stored only once every
one of its outputs is acknowledged, in order, and committed by librdkafka's
auto-commit, as sigflow does.

It reads the same variables file as sigflow (names, offset, scale, default,
fill, missing value, class labels) and publishes the same output object, keyed by
the event id: {"EventId": ..., "label": ..., "label_index": ...,
"probabilities": [...], "partition": P, "offset": O}, signals only (argmax is
the signal label). Malformed events are counted and skipped (the comparison
feeds none). With --max-events N it stops once N events are consumed and all
their outputs acknowledged, and prints one JSON line of figures.

Run by bench/peer/compare.py; requirements.txt pins what it was measured with.
"""
import argparse
import collections
import concurrent.futures
import json
import math
import os
import resource
import sys
import threading
import time

import msgspec
import numpy as np
import onnxruntime as ort
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def load_vars(path):
    with open(path, "rb") as f:
        v = json.load(f)
    inputs = v["inputs"]
    names = [i["name"] for i in inputs]
    offset = np.array([i["offset"] for i in inputs], dtype=np.float64)
    scale = np.array([i["scale"] for i in inputs], dtype=np.float64)
    default = np.array([i.get("default", math.nan) for i in inputs], dtype=np.float64)
    # sigflow's contract (README, "What goes in is what gets scored"): the
    # missing value takes the input's fill, else its default; an absent input
    # takes its default, and without one the event is refused.
    fill = np.array([i.get("fill", i.get("default", math.nan)) for i in inputs], dtype=np.float64)
    missing = v.get("missing_value")
    labels = v["class_labels"]
    return names, offset, scale, default, fill, missing, labels


def event_decoder(names, id_field):
    """A msgspec decoder straight into a struct with just the fields the model
    needs (the rest are skipped unparsed); an absent field decodes as NaN."""
    fields = [(n, float, math.nan) for n in names]
    fields.append((id_field, msgspec.Raw, msgspec.Raw(b"null")))
    Event = msgspec.defstruct("Event", fields, forbid_unknown_fields=False)
    return msgspec.json.Decoder(Event), len(names)


class Batch:
    """One consumed batch: its messages, rows, and outputs still unacknowledged."""
    __slots__ = ("msgs", "rows", "ids", "pending", "offsets", "done")

    def __init__(self, msgs):
        self.msgs = msgs
        self.rows = []
        self.ids = []
        self.pending = 0
        self.offsets = {}
        self.done = False


class Peer:
    def __init__(self, a):
        self.a = a
        (self.names, self.offset, self.scale, self.default, self.fill, self.missing,
         self.labels) = load_vars(a.variables)
        self.signal = self.labels.index(a.signal_label)
        self.decode, self.n_inputs = event_decoder(self.names, a.id_field)
        self.id_prefix = b"{" + json.dumps(a.id_field).encode() + b": "
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = [ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
                         for _ in range(a.workers)]
        self.input_name = self.sessions[0].get_inputs()[0].name
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=a.workers)
        common = {"bootstrap.servers": a.brokers}
        self.consumer = Consumer({
            **common,
            "group.id": a.group,
            "auto.offset.reset": "earliest",
            "enable.auto.offset.store": False,   # stored after acknowledgement
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 100,
            "fetch.wait.max.ms": 10,
            "fetch.queue.backoff.ms": 10,
            "queued.max.messages.kbytes": 65536,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
        })
        self.producer = Producer({
            **common,
            "enable.idempotence": True,
            "linger.ms": 2,
            "queue.buffering.max.kbytes": 32768,
            "message.timeout.ms": 0,
        })
        self.inflight = collections.deque()  # batches in consumption order
        self.consumed = 0
        self.acked = 0
        self.signals = 0
        self.bad = 0
        self.failed = 0
        self.t_first = None
        self.t_last_ack = None

    # -- decode and assemble (the main thread, overlapping the forward pass)
    def assemble(self, msgs):
        b = Batch(msgs)
        X = np.empty((len(msgs), self.n_inputs), dtype=np.float64)
        n = 0
        for i, m in enumerate(msgs):
            try:
                ev = self.decode.decode(m.value())
            except (msgspec.DecodeError, TypeError):
                self.bad += 1
                continue
            X[n] = msgspec.structs.astuple(ev)[:self.n_inputs]
            b.rows.append(i)
            b.ids.append(getattr(ev, self.a.id_field))
            n += 1
        X = X[:n]
        absent = np.isnan(X)  # the struct's default: the field was not there
        if absent.any():
            X = np.where(absent, self.default, X)
        if self.missing is not None:
            X = np.where(X == self.missing, self.fill, X)
        if absent.any() or self.missing is not None:
            if np.isnan(X).any():  # required and absent, or no fill: not scored
                keep = ~np.isnan(X).any(axis=1)
                self.bad += int((~keep).sum())
                X = X[keep]
                b.rows = [r for r, k in zip(b.rows, keep) if k]
                b.ids = [r for r, k in zip(b.ids, keep) if k]
        X = ((X + self.offset) * self.scale).astype(np.float32)
        for m in msgs:
            tp = (m.topic(), m.partition())
            if m.offset() + 1 > b.offsets.get(tp, -1):
                b.offsets[tp] = m.offset() + 1
        return b, X

    # -- the forward pass, split over the workers
    def submit(self, X):
        if len(X) == 0:
            return []
        k = len(self.sessions)
        cuts = np.linspace(0, len(X), k + 1).astype(int)
        return [self.pool.submit(self.sessions[i].run, None, {self.input_name: X[cuts[i]:cuts[i + 1]]})
                for i in range(k) if cuts[i + 1] > cuts[i]]

    # -- render and publish (the main thread)
    def publish(self, b, futures):
        probs = np.concatenate([f.result()[0] for f in futures]) if futures else np.empty((0, 2))
        label = probs.argmax(axis=1) if len(probs) else np.empty(0, dtype=int)
        sel = np.nonzero(label == self.signal)[0]
        lab = json.dumps(self.labels[self.signal])
        for j in sel:
            m = b.msgs[b.rows[j]]
            p = ", ".join("%.9g" % x for x in probs[j])
            out = b"%s%s, \"label\": %s, \"label_index\": %d, \"probabilities\": [%s], \"partition\": %d, \"offset\": %d}" % (
                self.id_prefix, bytes(b.ids[j]), lab.encode(), self.signal, p.encode(),
                m.partition(), m.offset())
            b.pending += 1
            while True:
                try:
                    self.producer.produce(self.a.output_topic, out, key=m.key(),
                                          on_delivery=lambda err, msg, b=b: self.on_delivery(err, b))
                    break
                except BufferError:
                    self.producer.poll(0.001)
        self.signals += len(sel)
        b.done = True
        self.inflight.append(b)
        self.advance()

    def on_delivery(self, err, b):
        if err is not None:
            self.failed += 1
            print("peer: delivery failed: %s" % err, file=sys.stderr)
            return  # the batch stays unacknowledged: its offsets are never stored
        b.pending -= 1

    def advance(self):
        """Stores the offsets of the completed prefix of batches."""
        done = []
        while self.inflight and self.inflight[0].done and self.inflight[0].pending == 0:
            b = self.inflight.popleft()
            done.extend(TopicPartition(t, p, o) for (t, p), o in b.offsets.items())
            self.acked += len(b.msgs)
        if done:
            self.consumer.store_offsets(offsets=done)
            self.t_last_ack = time.monotonic()

    def run(self):
        a = self.a
        self.consumer.subscribe([a.input_topic])
        cpu0 = None
        pending = None  # (batch, futures) in the forward pass
        stop = threading.Event()
        while not stop.is_set():
            want = a.batch_size
            if a.max_events:
                want = min(want, a.max_events - self.consumed)
            msgs = []
            if want > 0:
                msgs = self.consumer.consume(num_messages=want, timeout=0 if pending else 0.1)
            good = []
            for m in msgs:
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        print("peer: consumer error: %s" % m.error(), file=sys.stderr)
                    continue
                good.append(m)
            if good and self.t_first is None:
                self.t_first = time.monotonic()
                cpu0 = time.process_time()
            self.consumed += len(good)
            nxt = None
            if good:
                b, X = self.assemble(good)      # while `pending` runs
                nxt = (b, self.submit(X))       # queued behind it on the workers
            if pending:
                self.publish(*pending)          # while `nxt` runs
            pending = nxt
            self.producer.poll(0)
            self.advance()
            if a.max_events and self.consumed >= a.max_events and pending is None:
                while self.acked < self.consumed and not self.failed:
                    self.producer.poll(0.001)
                    self.advance()
                stop.set()
        cpu1 = time.process_time()
        self.producer.flush(30)
        self.consumer.commit(asynchronous=False)
        self.consumer.close()
        self.pool.shutdown()
        secs = (self.t_last_ack or time.monotonic()) - (self.t_first or time.monotonic())
        return {
            "side": "peer",
            "events": self.consumed,
            "signals": self.signals,
            "bad": self.bad,
            "failed_deliveries": self.failed,
            "seconds": secs,
            "events_per_s": self.consumed / secs if secs > 0 else 0,
            "cpu_s_per_event": (cpu1 - cpu0) / self.consumed if self.consumed and cpu0 is not None else 0,
            "rss_max_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "workers": a.workers,
            "onnxruntime": ort.__version__,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--group", default="peer")
    ap.add_argument("--input-topic", default="events")
    ap.add_argument("--output-topic", default="signals-peer")
    ap.add_argument("--model", required=True, help="the model in ONNX")
    ap.add_argument("--variables", required=True)
    ap.add_argument("--id-field", default="EventId")
    ap.add_argument("--signal-label", default="s")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-events", type=int, default=0, help="stop after this many (0: never)")
    a = ap.parse_args()
    print(json.dumps(Peer(a).run()))


if __name__ == "__main__":
    main()
