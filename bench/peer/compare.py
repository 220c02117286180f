#!/usr/bin/env python3
"""compare.py: sigflow and the strong Python peer, same broker, same events, one run.

One embedded broker (`sigflow broker`), one input topic pre-filled with N
events of the bundled ATLAS sample (`sigflow-replay`), then, one after the
other so each has the whole machine:

1. `sigflow run` as shipped (its defaults; extra arguments after `--`), its
   own group, publishing to `signals-sigflow`; timed from its first consumed
   event to its last acknowledged output (its /metrics polled every 20 ms),
   its CPU from /proc/PID/stat over the same window;
2. bench/peer/peer.py, its own group, publishing to `signals-peer`, timed
   the same way from the inside.

Then it reads both output topics and checks that both published the same
signal set (the same input partition/offset pairs, the same labels) and the
largest probability difference, and prints both rates and their ratio. Exit
status 1 when the sets differ (with `-- --precision bf16` or `int8`: when they agree on
less than 99.5 % of the events). Usage: bench/README.md ("The strong peer").
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from confluent_kafka import Consumer, KafkaError, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SAMPLE_EVENTS = 20000  # rows of the bundled sample


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as r:
        text = r.read().decode()
    out = {}
    for name in ("sigflow_events_consumed_total", "sigflow_signals_published_total"):
        m = re.search(r"^%s (\d+)" % name, text, re.M)
        out[name] = int(m.group(1)) if m else 0
    return out


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def run_sigflow(a, brokers, n, extra):
    cmd = [a.sigflow, "run", "--brokers", brokers, "--group", "cmp-sigflow",
           "--input-topic", "events", "--output-topic", "signals-sigflow",
           "--model", a.model, "--variables", a.variables,
           "--metrics-addr", "127.0.0.1:0"] + extra
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    port = None
    while port is None:
        line = p.stderr.readline()
        if not line:
            raise SystemExit("compare: sigflow run exited before serving metrics")
        m = re.search(r"port=(\d+)", line)
        if m and "metrics" in line:
            port = int(m.group(1))
    # keep draining its log so it never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    t_first = cpu0 = None
    last_signals, t_last_change = -1, None
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        m = metrics(port)
        now = time.monotonic()
        if t_first is None and m["sigflow_events_consumed_total"] > 0:
            t_first, cpu0 = now, proc_cpu_s(p.pid)
        if m["sigflow_signals_published_total"] != last_signals:
            last_signals, t_last_change, cpu1 = m["sigflow_signals_published_total"], now, proc_cpu_s(p.pid)
        if m["sigflow_events_consumed_total"] >= n and now - t_last_change > 0.2:
            break
        time.sleep(0.02)
    else:
        p.kill()
        raise SystemExit("compare: sigflow did not finish %d events in %d s" % (n, a.timeout))
    hwm = proc_hwm_mb(p.pid)
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    secs = t_last_change - t_first
    return {"side": "sigflow", "events": n, "signals": last_signals, "seconds": secs,
            "events_per_s": n / secs, "cpu_s_per_event": (cpu1 - cpu0) / n, "rss_max_mb": hwm}


def run_peer(a, brokers, n):
    cmd = [a.python, os.path.join(HERE, "peer.py"), "--brokers", brokers, "--group", "cmp-peer",
           "--input-topic", "events", "--output-topic", "signals-peer", "--model", a.onnx,
           "--variables", a.variables, "--max-events", str(n), "--workers", str(a.workers)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=a.timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_outputs(brokers, topic, partitions):
    """(input partition, input offset) -> (label, probabilities) of every output."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": "cmp-reader-" + topic,
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.wait.max.ms": 10})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = {}, set()
    deadline = time.monotonic() + 120
    while len(eof) < partitions and time.monotonic() < deadline:
        for m in c.consume(num_messages=10000, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            o = json.loads(m.value())
            got[(o["partition"], o["offset"])] = (o["label"], o["probabilities"])
    c.close()
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="sigflow's build directory")
    ap.add_argument("--events", type=int, default=200000, help="a multiple of 20,000")
    ap.add_argument("--partitions", type=int, default=48,
                    help="of the input topic; the embedded broker keeps 5 MB a partition")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "higgs_mlp.h5"))
    ap.add_argument("--onnx", default=os.path.join(ROOT, "models", "higgs_mlp.onnx"),
                    help="the same model in ONNX, for the peer")
    ap.add_argument("--variables", default=os.path.join(ROOT, "models", "higgs_variables.json"))
    ap.add_argument("--file", default=os.path.join(ROOT, "producer", "data",
                                                   "atlas-higgs-challenge-2014-v2-sample.csv.gz"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the peer's threads")
    ap.add_argument("--python", default=sys.executable, help="the peer's interpreter")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ap.add_argument("sigflow_args", nargs="*", help="after --: more arguments for sigflow run")
    a = ap.parse_args()
    a.sigflow = os.path.join(a.build, "sigflow")
    if a.events % SAMPLE_EVENTS:
        raise SystemExit("compare: --events must be a multiple of %d" % SAMPLE_EVENTS)
    for path in (a.onnx, a.model, a.variables, a.file, a.sigflow):
        if not os.path.exists(path):
            raise SystemExit("compare: %s: not found" % path)

    broker = subprocess.Popen([a.sigflow, "broker", "--partitions", str(a.partitions),
                               "--topic", "events", "--topic", "signals-sigflow",
                               "--topic", "signals-peer"], stdout=subprocess.PIPE, text=True)
    try:
        m = re.match(r"bootstrap=(\S+)", broker.stdout.readline())
        if not m:
            raise SystemExit("compare: sigflow broker did not start")
        brokers = m.group(1)
        t0 = time.monotonic()
        subprocess.run([os.path.join(a.build, "sigflow-replay"), "--brokers", brokers, "--topic", "events",
                        "--file", a.file, "--loop", str(a.events // SAMPLE_EVENTS), "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        prefill = a.events / (time.monotonic() - t0)
        load = os.getloadavg()
        s = run_sigflow(a, brokers, a.events, a.sigflow_args)
        p = run_peer(a, brokers, a.events)
        load_end = os.getloadavg()
        so = read_outputs(brokers, "signals-sigflow", a.partitions)
        po = read_outputs(brokers, "signals-peer", a.partitions)
    finally:
        broker.terminate()
        broker.wait(30)
    same_set = set(so) == set(po)
    same_labels = all(so[k][0] == po[k][0] for k in so if k in po)
    # A reduced precision moves the probabilities, so events near the boundary
    # may change sides: then the sets need only agree as the bench's labels
    # must (99.5 %, issue 11), and the differences are counted.
    differ = len(set(so) ^ set(po))
    agreement = 1 - differ / max(1, len(set(so) | set(po)))
    reduced = any(arg in (p, "--precision=" + p) for arg in a.sigflow_args for p in ("bf16", "int8"))
    ok = (same_set and same_labels) or (reduced and same_labels and agreement >= 0.995)
    dp = max((abs(x - y) for k in so if k in po for x, y in zip(so[k][1], po[k][1])), default=0.0)
    report = {
        "events": a.events, "partitions": a.partitions, "prefill_events_per_s": prefill,
        "loadavg_before": load, "loadavg_after": load_end, "cpu_model": cpu_model(),
        "cores": os.cpu_count(), "kernel": os.uname().release,
        "sigflow_args": a.sigflow_args, "sigflow": s, "peer": p,
        "ratio_sigflow_to_peer": s["events_per_s"] / p["events_per_s"],
        "signals_sigflow": len(so), "signals_peer": len(po),
        "same_signal_set": same_set, "same_labels": same_labels, "max_abs_dp": dp,
        "signals_in_one_only": differ, "signal_set_agreement": agreement, "ok": ok,
    }
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print("%d events on %d partitions of one embedded broker; %s, %d cores, kernel %s; "
              "load %.2f before, %.2f after" % (a.events, a.partitions, report["cpu_model"],
                                                 report["cores"], report["kernel"], load[0], load_end[0]))
        print("%-8s %12s %18s %10s" % ("side", "events/s", "CPU us per event", "RSS MB"))
        for r in (s, p):
            print("%-8s %12.0f %18.1f %10.0f" % (r["side"], r["events_per_s"], r["cpu_s_per_event"] * 1e6,
                                                 r["rss_max_mb"]))
        print("ratio sigflow / peer: %.2f" % report["ratio_sigflow_to_peer"])
        print("signals: sigflow %d, peer %d; same set: %s (%d in one only); same labels: %s; "
              "max |dp| %.2g" % (len(so), len(po), same_set, differ, same_labels, dp))
    return 0 if ok else 1


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
