# bench_real.sh: sigflow-bench against Apache Kafka (the ctest fixture's
# cluster in $SF_TEST_KAFKA_DIR): --brokers runs both phases on it and counts
# the broker's CPU through --broker-pids; --backlog pre-fills and times the
# catch-up; --soak runs on it too; the run's topics are gone afterwards. Sanity only, no timing
# threshold (bench/README.md has the figures).
set -euo pipefail

BENCH="$SIGFLOW_BUILD_DIR/sigflow-bench"
: "${SF_TEST_KAFKA_DIR:?needs a cluster: run through ctest, or tests/kafka/kafka.sh start DIR}"
bs=$(cat "$SF_TEST_KAFKA_DIR/bootstrap")
pids=$(cat "$SF_TEST_KAFKA_DIR"/node[0-9]*/pid | paste -sd, -)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -s "$T/err" ] && sed 's/^/  stderr: /' "$T/err" >&2
    exit 1
}
num() { sed -n "s/^ *\"$1\": \([0-9.e+-]*\),\{0,1\}$/\1/p" "$2" | head -n 1; }
positive() { awk -v a="$1" 'BEGIN { exit !(a > 0) }'; }

"$BENCH" --quick --json --batch-size 64 --limit-seconds 0.05 --brokers "$bs" --broker-pids "$pids" >"$T/out" 2>"$T/err" ||
    fail "sigflow-bench --quick --brokers failed"
grep -q "\"broker\": \"$bs\"" "$T/out" || fail "the report does not name the cluster"
eps=$(num events_per_s "$T/out")
positive "$eps" || fail "events_per_s '$eps' not positive"
broker_cpu=$(sed -n 's/^ *"broker": \([0-9.e+-]*\),\{0,1\}$/\1/p' "$T/out" | head -n 1)
positive "$broker_cpu" || fail "the broker's CPU per event '$broker_cpu' is not positive"

"$BENCH" --brokers "$bs" --broker-pids "$pids" --backlog 4000 --partitions 4 \
    --limit-seconds 0.05 >"$T/human" 2>"$T/err" || fail "sigflow-bench --backlog 4000 failed"
grep -q "^backlog:   4000 events on 4 partitions (pre-filled at" "$T/human" || fail "no pre-fill line"
grep -q "^catch-up: " "$T/human" || fail "no catch-up rate"

# --soak on Kafka: its dead letters get a topic of their own, deleted with the rest.
"$BENCH" --quick --seconds 0.5 --warmup 0.2 --limit-seconds 0.05 --soak 0.1 --soak-period 2 \
    --brokers "$bs" --broker-pids "$pids" >"$T/soak" 2>"$T/err" || fail "sigflow-bench --soak --brokers failed"
grep -qE "lost 0; reloads accepted 1, refused 1$" "$T/soak" ||
    fail "--soak --brokers totals: $(grep 'soak totals' "$T/soak")"

left=$(kcat -b "$bs" -L 2>/dev/null | grep -c 'topic "sigflow-bench-' || true)
[ "$left" -eq 0 ] || fail "$left bench topics left on the cluster"
echo "ok: flat out $eps ev/s, broker $broker_cpu CPU s/event; $(grep '^catch-up' "$T/human")"
