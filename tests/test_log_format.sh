# test_log_format.sh: --log-format json makes every stderr line of a real run
# (the demo: embedded broker, replay, pipeline) one JSON object with ts, level
# and msg, and the final throughput line carries the same counts as the text
# format's. A bad value is a usage error on every command that logs.
set -u
BIN=$SIGFLOW_BUILD_DIR/sigflow
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_logfmt.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; for f in "$TMP"/*.err; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" >&2; done; exit 1; }

for cmd in "$BIN run" "$BIN demo" "$BIN predict" "$BIN inspect" "$BIN evaluate" "$BIN broker" \
           "$SIGFLOW_BUILD_DIR/sigflow-bench" \
           "$SIGFLOW_BUILD_DIR/sigflow-replay"; do
    $cmd --log-format yaml >/dev/null 2>"$TMP/usage.err"; rc=$?
    [ $rc -eq 2 ] || fail "$cmd --log-format yaml: rc $rc"
    grep -q -- "--log-format 'yaml': --log-format wants text or json" "$TMP/usage.err" || fail "$cmd --log-format yaml message"
done
rm -f "$TMP/usage.err"

# One-shot commands: their own errors as one JSON object naming the command,
# or as the usual "PROG: MESSAGE" line.
"$BIN" inspect --model "$TMP/none.h5" --log-format json 2>"$TMP/cli.err"; rc=$?
[ $rc -eq 2 ] || fail "inspect of a missing model: rc $rc"
python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["level"] == "error" and o["prog"] == "sigflow inspect" and "none.h5" in o["msg"], o
' "$TMP/cli.err" || fail "inspect --log-format json error line"
echo '{}' | "$BIN" predict --model "$TMP/none.h5" --variables x --log-format json 2>"$TMP/cli.err"
python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["prog"] == "sigflow predict" and "none.h5" in o["msg"], o
' "$TMP/cli.err" || fail "predict --log-format json error line"
# evaluate: a bad line's warning and the final error, then the usual text.
printf '{"Label": "s", "DER_mass_MMC": "x"}\nnot json\n' | "$BIN" evaluate --model "$SIGFLOW_SOURCE_DIR/models/higgs_mlp.h5" \
    --variables "$SIGFLOW_SOURCE_DIR/models/higgs_variables.json" --log-format json 2>"$TMP/cli.err"; rc=$?
[ $rc -eq 1 ] || fail "evaluate of no usable event: rc $rc"
python3 -c '
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
assert all(o["prog"] == "sigflow evaluate" and o["ts"] for o in objs), objs
levels = [o["level"] for o in objs]
assert levels[0] == "info" and "forward pass" in objs[0]["msg"], objs
assert levels.count("warn") == 2 and objs[1]["msg"].startswith("stdin:1: field "), objs
assert objs[2]["msg"] == "stdin:2: no usable label", objs
assert levels[-1] == "error" and "no event could be evaluated" in objs[-1]["msg"], objs
' "$TMP/cli.err" || fail "evaluate --log-format json"
"$BIN" inspect --model "$TMP/none.h5" 2>"$TMP/cli.err"
grep -qx "sigflow inspect: $TMP/none.h5: cannot open: No such file or directory" "$TMP/cli.err" || fail "inspect text error line"
# sigflow broker: its serving line as JSON with the bootstrap address as a field.
"$BIN" broker --log-format json >"$TMP/broker.out" 2>"$TMP/broker.err" &
broker=$!
timeout 30 bash -c "until grep -q serving '$TMP/broker.err'; do sleep 0.05; done"
kill -TERM $broker; wait $broker
python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).readline())
assert o["msg"] == "serving until SIGINT or SIGTERM" and o["prog"] == "sigflow broker", o
assert "bootstrap=" + o["bootstrap"] == open(sys.argv[2]).readline().strip(), o
assert o["topics"] == 3 and o["partitions"] == 8, o
' "$TMP/broker.err" "$TMP/broker.out" || fail "sigflow broker --log-format json"
rm -f "$TMP/broker.err" "$TMP/broker.out"

# sigflow-replay: a bad row and the final error (no broker at a closed port) as JSON.
printf 'EventId,DER_mass_MMC\n1,2\n2\n' >"$TMP/rows.csv"
"$SIGFLOW_BUILD_DIR/sigflow-replay" -b 127.0.0.1:1 -t events -f "$TMP/rows.csv" --timeout 0.5 \
    --log-format json >/dev/null 2>"$TMP/cli.err"
python3 -c '
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
assert objs and all(o["prog"] == "sigflow-replay" and o["ts"] and o["level"] for o in objs), objs
assert any(o["level"] == "error" for o in objs), objs
' "$TMP/cli.err" || fail "sigflow-replay --log-format json"
rm -f "$TMP/cli.err"

"$BIN" demo --limit 600 --log-level info --log-format json >"$TMP/json.out" 2>"$TMP/json.err" || fail "demo json: rc $?"
"$BIN" demo --limit 600 --log-level info --log-format text >"$TMP/text.out" 2>"$TMP/text.err" || fail "demo text: rc $?"

python3 - "$TMP/json.err" "$TMP/text.err" <<'PY' || fail "log lines"
import json, re, sys
json_lines = open(sys.argv[1]).read().splitlines()
text_lines = open(sys.argv[2]).read().splitlines()
assert json_lines, "no JSON log lines"
objs = []
for i, line in enumerate(json_lines, 1):
    o = json.loads(line)  # raises on anything but one object per line
    assert isinstance(o, dict), line
    for k in ("ts", "level", "msg"):
        assert isinstance(o.get(k), str), f"line {i} lacks {k}: {line}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["ts"]), o["ts"]
    objs.append(o)
started = [o for o in objs if o["msg"] == "started"]
assert started and started[0]["model"].endswith("/share/sigflow/higgs_mlp.h5"), started
assert started[0]["inputs"] == 30 and isinstance(started[0]["sha256"], str)
assigned = [o for o in objs if o["msg"] == "assigned partitions"]
assert assigned and assigned[0]["count"] == 8, assigned
tp = [o for o in objs if o["msg"] == "throughput"]
assert tp, "no throughput line in JSON"
# the same counts from the text run's throughput line (the rates depend on timing)
text_tp = [l for l in text_lines if " throughput " in l]
assert text_tp, "no throughput line in text"
fields = dict(kv.split("=", 1) for kv in text_tp[-1].split(" throughput ", 1)[1].split())
j = tp[-1]
assert set(fields) == set(j) - {"ts", "level", "msg"}, (sorted(fields), sorted(j))
for k in ("consumed", "predicted", "signals", "dead_letters", "rejected"):
    assert j[k] == int(fields[k]), (k, j[k], fields[k])
assert j["consumed"] == 600 and j["predicted"] == 600, j
print(f"{len(objs)} JSON lines; throughput: consumed={j['consumed']} signals={j['signals']} in both formats")
PY
