# test_corrupt_model.sh: the one-byte reproducers of issue 15 (libhdf5 segfaults
# or spins on them) are refused by `sigflow predict` and `sigflow inspect`, and
# at start-up by `sigflow run` and `sigflow demo`: exit 2 and one line naming
# the file and what happened, never a SIGSEGV or a hang. So is a model that
# makes libhdf5 open another file (issue 26's sandbox).
set -euo pipefail

SF="$SIGFLOW_BUILD_DIR/sigflow"
FIX="$SIGFLOW_SOURCE_DIR/tests/fixtures"
VARS="$FIX/vars_higgs.json"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

run() { # records the exit status in $rc without tripping set -e
    set +e
    "$@"
    rc=$?
    set -e
}

# $1: what ran, $2: stderr file, $3: the expected line
expect_one_line() {
    [ "$rc" -eq 2 ] || fail "$1: exit status $rc, expected 2 ($(cat "$2"))"
    [ "$(wc -l <"$2")" -eq 1 ] || fail "$1: expected one line on stderr, got: $(cat "$2")"
    grep -qF -- "$3" "$2" || fail "$1: expected '$3', got: $(cat "$2")"
    echo "ok: $1: $(cat "$2")"
}

echo '{"EventId": 1}' >"$T/events"
for name in corrupt_segv_2130_10 corrupt_segv_2130_80 corrupt_segv_2133_7f corrupt_hang_6240_7f; do
    gunzip -c "$FIX/$name.h5.gz" >"$T/$name.h5"
done
gunzip -c "$FIX/corrupt_base.h5.gz" >"$T/base.h5"

# The file without the changed byte is a model: the byte makes the difference.
run "$SF" inspect --model "$T/base.h5" >"$T/out" 2>"$T/err"
[ "$rc" -eq 0 ] || fail "inspect base: exit $rc: $(cat "$T/err")"

# $1: a name for the messages, $2: the model, $3: what every command says of
# it after "sigflow CMD: ". predict, inspect, run and demo each refuse it with
# exit 2 and that one line; predict writes nothing and demo never starts.
refused_everywhere() {
    local name=$1 m=$2 want=$3
    run "$SF" predict --model "$m" --variables "$VARS" <"$T/events" >"$T/out" 2>"$T/err"
    expect_one_line "predict $name" "$T/err" "sigflow predict: $want"
    [ ! -s "$T/out" ] || fail "predict $name wrote output: $(cat "$T/out")"

    run "$SF" inspect --model "$m" >"$T/out" 2>"$T/err"
    expect_one_line "inspect $name" "$T/err" "sigflow inspect: $want"

    # Start-up: the model is refused before any Kafka client exists, so the
    # unreachable broker is never contacted.
    run "$SF" run --brokers 127.0.0.1:1 --model "$m" --variables "$VARS" --metrics-addr none \
        >"$T/out" 2>"$T/err"
    expect_one_line "run $name" "$T/err" "sigflow run: $want"

    # The demo loads its model before it starts the embedded broker.
    run "$SF" demo --model "$m" --variables "$VARS" >"$T/out" 2>"$T/err"
    expect_one_line "demo $name" "$T/err" "sigflow demo: $want"
    [ ! -s "$T/out" ] || fail "demo $name started anyway: $(cat "$T/out")"
}

for name in corrupt_segv_2130_10 corrupt_segv_2130_80 corrupt_segv_2133_7f; do
    # A sanitizer build may catch libhdf5's bad memcpy and abort: any signal.
    refused_everywhere "$name" "$T/$name.h5" "$T/$name.h5: the HDF5 library crashed reading it (signal "
done

# A model whose weights group is an external link to /etc/passwd: libhdf5
# opens that file by name, and the loader's sandbox kills it for it (issue 26).
m="$FIX/sandbox_external_link.h5"
want="$m: model loader violated its sandbox (syscall openat) while reading $m"
run "$SF" predict --model "$m" --variables "$VARS" <"$T/events" >"$T/out" 2>"$T/err"
expect_one_line "predict sandbox" "$T/err" "sigflow predict: $want"
run "$SF" run --brokers 127.0.0.1:1 --model "$m" --variables "$VARS" --metrics-addr none \
    >"$T/out" 2>"$T/err"
expect_one_line "run sandbox" "$T/err" "sigflow run: $want"

# The hang, with a limit from the environment (the 10 s default would only
# make the test slower).
m="$T/corrupt_hang_6240_7f.h5"
start=$(date +%s)
run env SIGFLOW_MODEL_LOAD_TIMEOUT=2 "$SF" predict --model "$m" --variables "$VARS" <"$T/events" \
    >"$T/out" 2>"$T/err"
expect_one_line "predict hang" "$T/err" "sigflow predict: $m: reading it took longer than 2 s"
[ $(($(date +%s) - start)) -lt 30 ] || fail "predict hang: the loader was not killed in time"
run env SIGFLOW_MODEL_LOAD_TIMEOUT=2 "$SF" run --brokers 127.0.0.1:1 --model "$m" \
    --variables "$VARS" --metrics-addr none >"$T/out" 2>"$T/err"
expect_one_line "run hang" "$T/err" "sigflow run: $m: reading it took longer than 2 s"
# A damaged ONNX file (issue 27) gets the same treatment: the shipped model
# cut short, and with a length field made to run past the end.
head -c 20000 "$SIGFLOW_SOURCE_DIR/models/higgs_mlp.onnx" >"$T/cut.onnx"
for m in "$T/cut.onnx" "$FIX/onnx/refuse_truncated.onnx"; do
    refused_everywhere "$m" "$m" "$m: not a valid ONNX file: "
done
echo "test_corrupt_model: all passed"
