# test_cli_contract.sh: the operator's contract on stderr (issue 28). Every
# failure path of every binary, with --log-format json or SIGFLOW_LOG_FORMAT=json,
# writes nothing but JSON objects, one a line, with an error among them; in text
# a usage error is one line naming the problem, then "Try 'PROG --help'.", and
# exit status 2. No broker: the unreachable one is a closed port.
set -u
SF=$SIGFLOW_BUILD_DIR/sigflow
REPLAY=$SIGFLOW_BUILD_DIR/sigflow-replay
BENCH=$SIGFLOW_BUILD_DIR/sigflow-bench
MODEL=$SIGFLOW_SOURCE_DIR/models/higgs_mlp.h5
VARS=$SIGFLOW_SOURCE_DIR/models/higgs_variables.json
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_cli.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
CLOSED=127.0.0.1:$port

# Every line of $TMP/err is a JSON object with ts, level and msg, naming prog
# (when $1 is not empty) and at least one is an error.
all_json() {
    python3 - "$TMP/err" "$1" <<'PY' || fail "$2: stderr is not JSON lines: $(cat "$TMP/err")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no line"
objs = [json.loads(l) for l in lines]
assert all(isinstance(o, dict) and o["ts"] and o["level"] and "msg" in o for o in objs), objs
assert any(o["level"] == "error" for o in objs), objs
if sys.argv[2]:
    assert any(o.get("prog") == sys.argv[2] for o in objs), objs
PY
}

# $1 expected status, $2 prog, rest: the command. Runs it twice, with the flag
# and with the variable.
json_failure() {
    local want=$1 prog=$2
    shift 2
    timeout 60 "$@" --log-format json </dev/null >/dev/null 2>"$TMP/err"; rc=$?
    [ $rc -eq "$want" ] || fail "$* --log-format json: rc $rc, expected $want: $(cat "$TMP/err")"
    all_json "$prog" "$* --log-format json"
    SIGFLOW_LOG_FORMAT=json timeout 60 "$@" </dev/null >/dev/null 2>"$TMP/err"; rc=$?
    [ $rc -eq "$want" ] || fail "SIGFLOW_LOG_FORMAT=json $*: rc $rc, expected $want"
    all_json "$prog" "SIGFLOW_LOG_FORMAT=json $*"
}

# Usage errors, each command.
json_failure 2 "sigflow run" "$SF" run --bogus
json_failure 2 "sigflow run" "$SF" run
json_failure 2 "sigflow run" "$SF" run -b x --model "$MODEL" --variables "$VARS" --metrics-addr 9464
json_failure 2 "sigflow run" "$SF" run -b x --model "$MODEL" --variables "$VARS" -X nonsense
json_failure 2 "sigflow run" "$SF" run -b x --model "$MODEL" --variables "$VARS" -X nonsense.property=1
json_failure 2 "sigflow run" "$SF" run -b x --model "$MODEL" --variables "$VARS" -F "$TMP/none.properties"
json_failure 2 "sigflow run" "$SF" run -b x --model "$MODEL" --variables "$VARS" --batch-size 0
json_failure 2 "sigflow demo" "$SF" demo --limit 0
json_failure 2 "sigflow predict" "$SF" predict --model "$MODEL"
json_failure 2 "sigflow inspect" "$SF" inspect extra
json_failure 2 "sigflow evaluate" "$SF" evaluate --normalize l3
json_failure 2 "sigflow broker" "$SF" broker --partitions 0
json_failure 2 "sigflow" "$SF" nonsense
json_failure 2 "sigflow-replay" "$REPLAY" --bogus
json_failure 2 "sigflow-replay" "$REPLAY" -b x -t y -f z -X nonsense.property=1
json_failure 2 "sigflow-bench" "$BENCH" --seconds 0
json_failure 2 "sigflow-bench" "$BENCH" -X nonsense
# Fatal errors: a model that does not load, a broker that does not answer.
json_failure 2 "sigflow run" "$SF" run -b "$CLOSED" --model "$TMP/nope.h5" --variables "$VARS" --metrics-addr none
json_failure 1 "" "$SF" run -b "$CLOSED" --model "$MODEL" --variables "$VARS" --metrics-addr none \
    --connect-timeout-ms 300
json_failure 2 "sigflow demo" "$SF" demo --model "$TMP/nope.h5"
json_failure 2 "sigflow predict" "$SF" predict --model "$TMP/nope.h5" --variables "$VARS"
json_failure 2 "sigflow inspect" "$SF" inspect --model "$TMP/nope.h5"
json_failure 2 "sigflow evaluate" "$SF" evaluate --model "$TMP/nope.h5" --variables "$VARS"
json_failure 1 "sigflow-replay" "$REPLAY" -b "$CLOSED" -t events -f "$TMP/missing.csv"
json_failure 1 "sigflow-replay" "$REPLAY" -b "$CLOSED" -t events \
    -f "$SIGFLOW_SOURCE_DIR/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz" --timeout 0.3 -X log_level=7
grep -q '"facility"' "$TMP/err" || fail "sigflow-replay -X log_level=7: librdkafka's lines are not in the log"
json_failure 1 "sigflow-bench" "$BENCH" --model "$TMP/nope.h5" --quick

# Text: one line naming the problem, then GNU's hint; status 2.
usage_text() { # $1: what the first line holds, $2: the hint's program, rest: the command
    local pat=$1 prog=$2
    shift 2
    "$@" </dev/null >"$TMP/out" 2>"$TMP/err"; rc=$?
    [ $rc -eq 2 ] || fail "$*: rc $rc, expected 2"
    [ "$(wc -l <"$TMP/err")" -eq 2 ] || fail "$*: $(wc -l <"$TMP/err") lines on stderr: $(cat "$TMP/err")"
    head -n1 "$TMP/err" | grep -qF -- "$pat" || fail "$*: first line lacks '$pat': $(cat "$TMP/err")"
    [ "$(tail -n1 "$TMP/err")" = "Try '$prog --help'." ] || fail "$*: no hint: $(cat "$TMP/err")"
}
usage_text "sigflow run: unknown option '--bogus'" "sigflow run" "$SF" run --bogus
usage_text "sigflow run: --metrics-addr: http address '9464'" "sigflow run" \
    "$SF" run -b x --model "$MODEL" --variables "$VARS" --metrics-addr 9464
usage_text "nonsense.property" "sigflow run" "$SF" run -b x --model "$MODEL" --variables "$VARS" \
    -X nonsense.property=1 --metrics-addr none
usage_text "sigflow: unknown command 'nonsense'" "sigflow" "$SF" nonsense
usage_text "sigflow predict: --model and --variables are required" "sigflow predict" "$SF" predict
usage_text "sigflow broker: unexpected argument 'x'" "sigflow broker" "$SF" broker x
usage_text "sigflow-bench: unknown option '--bogus'" "sigflow-bench" "$BENCH" --bogus
usage_text "sigflow-replay: --brokers, --topic and --file are required" "sigflow-replay" "$REPLAY"

# SIGTERM and SIGINT while run waits for a broker at start-up: exit 0 within 1.5 s.
for sig in TERM INT; do
    "$SF" run -b "$CLOSED" --model "$MODEL" --variables "$VARS" --metrics-addr none \
        --connect-timeout-ms 60000 2>"$TMP/err" &
    pid=$!
    timeout 60 bash -c "until grep -q 'Connect to' '$TMP/err'; do sleep 0.05; done" ||
        fail "run did not start waiting for the broker: $(cat "$TMP/err")"
    start=$(date +%s%N)
    kill -$sig $pid
    wait $pid; rc=$?
    took=$(( ($(date +%s%N) - start) / 1000000 ))
    [ $rc -eq 0 ] || fail "SIG$sig during the start-up wait: rc $rc"
    [ $took -le 1500 ] || fail "SIG$sig during the start-up wait: exit after $took ms"
    echo "SIG$sig during the start-up wait: exit 0 after $took ms"
done

# SIGTERM while run loads a model that takes long (the hang reproducer, under
# a 60 s limit): the loader is killed and run exits 0 within 1.5 s.
gunzip -c "$SIGFLOW_SOURCE_DIR/tests/fixtures/corrupt_hang_6240_7f.h5.gz" >"$TMP/hang.h5"
SIGFLOW_MODEL_LOAD_TIMEOUT=60 "$SF" run -b "$CLOSED" --model "$TMP/hang.h5" --variables "$VARS" \
    --metrics-addr none 2>"$TMP/err" &
pid=$!
timeout 60 bash -c "until pgrep -P $pid -f sigflow-loader >/dev/null; do sleep 0.05; done" ||
    fail "run did not start loading the model: $(cat "$TMP/err")"
start=$(date +%s%N)
kill -TERM $pid
wait $pid; rc=$?
took=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc -eq 0 ] || fail "SIGTERM during the model load: rc $rc: $(cat "$TMP/err")"
[ $took -le 1500 ] || fail "SIGTERM during the model load: exit after $took ms"
pgrep -f "sigflow-loader $TMP/hang.h5" >/dev/null && fail "SIGTERM during the model load: the loader lives on"
echo "SIGTERM during the model load: exit 0 after $took ms"

# A model sigflow cannot read: what it looks like and what sigflow reads.
refused_model() { # $1: what it should look like, rest: predict's arguments
    local like=$1
    shift
    "$SF" predict "$@" </dev/null >/dev/null 2>"$TMP/err"; rc=$?
    [ $rc -eq 2 ] || fail "predict $*: rc $rc"
    grep -qF "it looks like $like" "$TMP/err" || fail "predict $*: not '$like': $(cat "$TMP/err")"
}
mkdir -p "$TMP/saved/variables" && : >"$TMP/saved/saved_model.pb"
# sigflow reads ONNX (issue 27): a damaged one gets the ONNX reader's message.
printf '\x08\x08\x12\x07pytorch\x1a\x052.1.0:\x04onnx' >"$TMP/model.onnx"
"$SF" predict --model "$TMP/model.onnx" --variables "$VARS" </dev/null >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] && grep -qF "model.onnx: not a valid ONNX file" "$TMP/err" && ! grep -q "looks like" "$TMP/err" ||
    fail "a damaged ONNX model: $(cat "$TMP/err")"
printf '\x1c\x00\x00\x00TFL3\x00\x00\x12\x00' >"$TMP/model.tflite"
refused_model "a TensorFlow graph file; sigflow reads Keras HDF5 (.h5: a whole model, or weights with --architecture), .keras archives, ONNX models" --model "$TMP/model.tflite" --variables "$VARS"
refused_model "a TensorFlow SavedModel directory; sigflow reads" --model "$TMP/saved" --variables "$VARS"
refused_model "a variables JSON file; sigflow reads" --model "$VARS" --variables "$MODEL"
refused_model "an HDF5 file; --variables wants a variables JSON file" --model "$MODEL" --variables "$MODEL"
refused_model "a model set" --model "$MODEL" --variables "$SIGFLOW_SOURCE_DIR/models/higgs_ensemble.json"

# --version: the project's version (and git describe from a checkout), then the
# libraries', each "name X.Y.Z"; exit 0.
for bin in "$SF" "$REPLAY" "$BENCH"; do
    "$bin" --version >"$TMP/out" 2>"$TMP/err" || fail "$bin --version: rc $?"
    [ ! -s "$TMP/err" ] || fail "$bin --version wrote to stderr"
    want=$(sed -n 's/^project(sigflow VERSION \([0-9.]*\).*/\1/p' "$SIGFLOW_SOURCE_DIR/CMakeLists.txt")
    head -n1 "$TMP/out" | grep -qE "^$(basename "$bin") $want( \(git [^)]+\))?\$" ||
        fail "$bin --version first line: $(head -n1 "$TMP/out")"
    for lib in librdkafka oneDNN OpenBLAS HDF5; do
        grep -qE "^$lib [0-9]+\.[0-9]+\.[0-9]+\$" "$TMP/out" || fail "$bin --version lacks $lib: $(cat "$TMP/out")"
    done
done

# sigflow help CMD is CMD's help.
for cmd in run demo predict inspect evaluate broker; do
    "$SF" help $cmd >"$TMP/out" 2>"$TMP/err" || fail "sigflow help $cmd: rc $?"
    "$SF" $cmd --help >"$TMP/want" || fail "sigflow $cmd --help"
    cmp -s "$TMP/out" "$TMP/want" || fail "sigflow help $cmd is not sigflow $cmd --help"
done
echo "ok"
