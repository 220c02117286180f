# test_prefetch.sh: the daemon's consumer prefetch bound (issue 24), as shipped.
# A backlog larger than the prefetch waits in the embedded broker; the daemon,
# with its defaults, works through it while librdkafka's fetch debug shows the
# queue at every pause and resume. Checked: the limits in force are the
# documented ones (150,000 events, 96 MB), the backlog did reach them (the
# bound was exercised), the queue never held more than the bound plus one fetch
# response (fetch.max.bytes, 8 MB), and the daemon's peak RSS stayed at most
# 250 MB (not under sanitizers, whose shadow memory is theirs). No timing: how
# fast it catches up is bench/README.md's business.
set -u
BIN="$SIGFLOW_BUILD_DIR/sigflow"
REPLAY="$SIGFLOW_BUILD_DIR/sigflow-replay"
SRC="$SIGFLOW_SOURCE_DIR"
T=$(mktemp -d -t sf_test_prefetch.XXXXXX)
BPID= DPID=
cleanup() {
    [ -n "$DPID" ] && kill -KILL "$DPID" 2>/dev/null
    [ -n "$BPID" ] && kill -KILL "$BPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/err" ] && tail -5 "$T/err" | sed 's/^/  daemon stderr: /' >&2; exit 1; }
wait_for() {
    local limit=$1; shift
    timeout "$limit" bash -c "until $*; do sleep 0.05; done" || return 1
}

EVENTS=200000 # 147 MB of the sample's JSON: more than the 96 MB prefetch
model=(--model "$SRC/models/higgs_mlp.h5" --variables "$SRC/models/higgs_variables.json")
[ -r "$SRC/models/higgs_mlp.h5" ] ||
    model=(--model "$SRC/tests/fixtures/model_mlp.h5" --variables "$SRC/tests/fixtures/vars_higgs.json")

# 48 partitions: the embedded broker keeps 5 MB of each.
"$BIN" broker --partitions 48 --topic events --topic signals >"$T/bs" 2>/dev/null &
BPID=$!
wait_for 10 "[ -s '$T/bs' ]" || fail "no broker"
bs=$(sed -n 's/^bootstrap=//p' "$T/bs")
"$REPLAY" --brokers "$bs" --topic events --loop $((EVENTS / 20000)) --quiet \
    --file "$SRC/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz" >/dev/null ||
    fail "cannot pre-fill the backlog"

"$BIN" run --brokers "$bs" "${model[@]}" --metrics-addr 127.0.0.1:0 --log-level debug \
    -X debug=fetch 2>"$T/err" &
DPID=$!
wait_for 60 "grep -q 'metrics on' '$T/err'" || fail "the daemon did not start"
port=$(sed -n 's/.*metrics on .* port=\([0-9]*\).*/\1/p' "$T/err" | head -n 1)
consumed() { curl -s "127.0.0.1:$port/metrics" | sed -n "s/^sigflow_events_consumed_total //p"; }
wait_for 280 "[ \"\$(curl -s 127.0.0.1:$port/metrics | sed -n 's/^sigflow_events_consumed_total //p')\" -ge $EVENTS ]" ||
    fail "the backlog was not consumed in 280 s ($(consumed) of $EVENTS)"
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DPID/status")
kill -TERM "$DPID"
wait "$DPID" || fail "the daemon's stop exited $?"
DPID=

# librdkafka's fetch decisions: "(N/MAX msgs, K/MAXKB kb queued, ...) is ..."
grep -o '([0-9]*/[0-9]* msgs, [0-9]*/[0-9]* kb queued' "$T/err" |
    tr -d '(' | tr '/,' '  ' >"$T/queue"
[ -s "$T/queue" ] || fail "no fetch debug lines"
read -r limits < <(awk '{ print $2, $5 }' "$T/queue" | sort -u)
[ "$limits" = "150000 98304" ] || fail "prefetch limits in force: '$limits', expected '150000 98304'"
grep -q 'not fetchable: queued.m' "$T/err" || fail "the backlog never reached the prefetch bound"
max_kb=$(awk 'BEGIN { m = 0 } $4 > m { m = $4 } END { print m }' "$T/queue")
[ "$max_kb" -le $((98304 + 8192)) ] || fail "the queue held $max_kb kB, over 96 MB plus one 8 MB fetch"
if grep -q '^SIGFLOW_SANITIZE:BOOL=ON' "$SIGFLOW_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
    echo "skipped: peak RSS under sanitizers ($((hwm_kb / 1024)) MB)"
else
    [ "$hwm_kb" -le $((250 * 1024)) ] || fail "peak RSS $((hwm_kb / 1024)) MB, over 250 MB"
fi
echo "ok: queue at most $((max_kb / 1024)) MB of events, daemon peak RSS $((hwm_kb / 1024)) MB"
