# test_broker_cli.sh: `sigflow broker` as a process, the way a developer or a
# script uses it: the bootstrap line comes first (and in the file, atomically),
# kcat can list, produce and consume, SIGTERM ends it with status 0, and bad
# options are refused with status 2.
set -u
BIN="$SIGFLOW_BUILD_DIR/sigflow"
TMP=$(mktemp -d -t sf_test_broker.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$TMP/err" ] && sed 's/^/  broker stderr: /' "$TMP/err" >&2; exit 1; }

# Waits (bounded) until a command succeeds.
wait_for() {
    local limit=$1; shift
    timeout "$limit" bash -c "until $*; do sleep 0.05; done" || return 1
}

"$BIN" broker --help | grep -q "bootstrap=HOST:PORT" || fail "--help"
"$BIN" broker --bogus 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] || fail "unknown option: rc $rc"
[ "$(wc -l <"$TMP/e")" -eq 2 ] && head -n1 "$TMP/e" | grep -q "unknown option '--bogus'" &&
    [ "$(tail -n1 "$TMP/e")" = "Try 'sigflow broker --help'." ] || fail "unknown option message: $(cat "$TMP/e")"
"$BIN" broker --partitions 0 2>"$TMP/e"; rc=$?
[ $rc -eq 2 ] && grep -q "partitions wants 1..10000" "$TMP/e" || fail "--partitions 0: rc $rc"

# Default topics, then custom ones.
"$BIN" broker --bootstrap-file "$TMP/bs" >"$TMP/out" 2>"$TMP/err" &
PID=$!
wait_for 10 "[ -s '$TMP/out' ]" || fail "no bootstrap line within 10 s"
line=$(head -n1 "$TMP/out")
[[ "$line" =~ ^bootstrap=127\.0\.0\.1:[0-9]+$ ]] || fail "first line '$line'"
addr=${line#bootstrap=}
wait_for 5 "[ -f '$TMP/bs' ]" || fail "no bootstrap file"
[ "$(cat "$TMP/bs")" = "$addr" ] || fail "bootstrap file '$(cat "$TMP/bs")' != '$addr'"
ls "$TMP" | grep -q '\.tmp\.' && fail "temporary file left behind"
kcat -b "$addr" -L -J -m 10 >"$TMP/meta" || fail "kcat -L"
for t in events signals events.dlq; do
    python3 -c "
import json,sys
md=json.load(open('$TMP/meta'))
t=[x for x in md['topics'] if x['topic']=='$t']
sys.exit(0 if t and len(t[0]['partitions'])==8 else 1)" || fail "topic $t with 8 partitions missing"
done
kill -TERM "$PID"
timeout 10 tail --pid="$PID" -f /dev/null || fail "still running 10 s after SIGTERM"
wait "$PID"; rc=$?
PID=
[ $rc -eq 0 ] || fail "exit status $rc after SIGTERM"
[ -e "$TMP/bs" ] && fail "bootstrap file not removed at exit"

"$BIN" broker --partitions 3 --topic t1 --topic t2 >"$TMP/out" 2>"$TMP/err" &
PID=$!
wait_for 10 "[ -s '$TMP/out' ]" || fail "no bootstrap line within 10 s"
addr=$(sed -n '1s/^bootstrap=//p' "$TMP/out")
# Bounded, with kcat's own trace kept: its default 300 s delivery timeout once
# outlasted the test's, and under ASan at load 40 kcat once asked for t2's
# metadata for 30 s without an answer (1 run in ~150 each time, not reproduced
# in 150 more). A hang must fail with evidence: the start of the trace (the
# connection) and its end.
printf 'one\ntwo\nthree\n' |
    timeout 40 kcat -P -b "$addr" -t t2 -p 1 -X message.timeout.ms=30000 \
        -d broker,msg,topic,metadata,protocol 2>"$TMP/kcat" ||
    { { head -n 60 "$TMP/kcat"; echo ...; tail -n 30 "$TMP/kcat"; } | sed 's/^/  kcat: /' >&2
      sed 's/^/  broker: /' "$TMP/err" >&2; fail "kcat -P"; }
got=$(timeout 20 kcat -C -b "$addr" -t t2 -p 1 -o beginning -c 3 -e -q) || fail "kcat -C"
[ "$got" = "$(printf 'one\ntwo\nthree')" ] || fail "consumed '$got'"
kcat -b "$addr" -L -m 10 -t t1 | grep -q "3 partitions" || fail "t1 should have 3 partitions"
kill -INT "$PID"
timeout 10 tail --pid="$PID" -f /dev/null || fail "still running 10 s after SIGINT"
wait "$PID"; rc=$?
PID=
[ $rc -eq 0 ] || fail "exit status $rc after SIGINT"
echo "ok"
