# test_replay_cli.sh: sigflow-replay's command line as a user meets it: usage
# errors (status 2, the problem and a hint), a missing file and an unreachable broker
# (status 1, one line, within the bound), --forever stopped by SIGTERM (status
# 0, flushed, summary), an interval that SIGTERM cuts short, and a run checked
# with kcat, all against a spawned `sigflow broker`.
set -u
REPLAY="$SIGFLOW_BUILD_DIR/sigflow-replay"
SAMPLE="$SIGFLOW_SOURCE_DIR/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz"
TMP=$(mktemp -d -t sf_test_replay_cli.XXXXXX)
BPID=
RPID=
cleanup() {
    [ -n "$RPID" ] && kill -KILL "$RPID" 2>/dev/null
    [ -n "$BPID" ] && kill -KILL "$BPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_for() {
    local limit=$1; shift
    timeout "$limit" bash -c "until $*; do sleep 0.05; done" || return 1
}
# Runs the tool, bounded, capturing stdout, stderr and the status.
run() {
    timeout 60 "$REPLAY" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
}
one_line() { # stderr is exactly one line containing $1
    [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qF -- "$1" "$TMP/err" ||
        fail "stderr should be one line with '$1', got: $(cat "$TMP/err")"
}

usage_error() { # stderr is the problem naming $1, then GNU's hint
    [ "$(wc -l <"$TMP/err")" -eq 2 ] && head -n1 "$TMP/err" | grep -qF -- "$1" &&
        [ "$(tail -n1 "$TMP/err")" = "Try 'sigflow-replay --help'." ] ||
        fail "stderr should be a line with '$1' and Try..., got: $(cat "$TMP/err")"
}

# Usage errors: status 2, one line and the hint, before touching any broker.
run --help; [ $rc -eq 0 ] && grep -q "usage: sigflow-replay" "$TMP/out" || fail "--help"
run; [ $rc -eq 2 ] || fail "no arguments: rc $rc"; usage_error "are required"
run --bogus; [ $rc -eq 2 ] || fail "--bogus: rc $rc"; usage_error "unknown option '--bogus'"
run -b x -t y -f "$SAMPLE" --rate abc; [ $rc -eq 2 ] || fail "--rate abc: rc $rc"; usage_error "--rate wants"
run -b x -t y -f "$SAMPLE" --loop 2 --forever; [ $rc -eq 2 ] || fail "--loop+--forever"; usage_error "exclude"
run -b x -t y -f "$SAMPLE" -X nonsense.property=1; [ $rc -eq 2 ] || fail "-X bad: rc $rc"; usage_error "nonsense.property"
run -b x -t y -f "$SAMPLE" extra; [ $rc -eq 2 ] || fail "extra argument: rc $rc"; usage_error "unexpected argument"

# A missing file: status 1, one line naming it.
run -b 127.0.0.1:9 -t events -f "$TMP/missing.csv"
[ $rc -eq 1 ] || fail "missing file: rc $rc"; one_line "missing.csv: No such file or directory"

# Nothing listens on a just-closed port: one line, status 1, within the bound.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
start=$(date +%s%N)
run -b "127.0.0.1:$port" -t events -f "$SAMPLE" --timeout 1.5
took=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc -eq 1 ] || fail "closed port: rc $rc"
one_line "no Kafka broker answered at 127.0.0.1:$port within 1.5 s"
[ $took -lt 6000 ] || fail "closed port took $took ms"

# A broker to talk to.
"$SIGFLOW_BUILD_DIR/sigflow" broker --partitions 2 >"$TMP/bout" 2>/dev/null &
BPID=$!
wait_for 10 "[ -s '$TMP/bout' ]" || fail "broker did not start"
B=$(sed -n '1s/^bootstrap=//p' "$TMP/bout")

# A plain run, read back with kcat: key and JSON value of the first row.
run -b "$B" -t events -f "$SAMPLE" --limit 5 --quiet
[ $rc -eq 0 ] || fail "plain run: rc $rc: $(cat "$TMP/err")"
grep -Eq '^read=5 sent=5 delivered=5 failed=0 skipped=0 seconds=[0-9.]+ rate=[0-9]+/s$' "$TMP/out" ||
    fail "summary: $(cat "$TMP/out")"
[ -s "$TMP/err" ] && fail "unexpected stderr: $(cat "$TMP/err")"
timeout 20 kcat -C -b "$B" -t events -o beginning -c 5 -e -q -f '%k %s\n' >"$TMP/got" || fail "kcat"
grep -q '^100000 {"EventId":100000,"DER_mass_MMC":138.47,"DER_mass_transverse_met_lep":51.655,' "$TMP/got" ||
    fail "first event: $(head -c 300 "$TMP/got")"
grep -q 'Label\|Weight\|Kaggle' "$TMP/got" && fail "dropped columns present"
[ "$(wc -l <"$TMP/got")" -eq 5 ] || fail "expected 5 messages"

# --forever until SIGTERM: exit 0 after flushing, with the summary.
"$REPLAY" -b "$B" -t forever -f "$SAMPLE" --forever --rate 2000 --quiet >"$TMP/out" 2>"$TMP/err" &
RPID=$!
wait_for 20 "[ \$(kcat -C -b '$B' -t forever -o beginning -e -q 2>/dev/null | head -n 100 | wc -l) -ge 100 ]" ||
    fail "--forever produced nothing"
kill -TERM "$RPID"
timeout 15 tail --pid="$RPID" -f /dev/null || fail "--forever still running 15 s after SIGTERM"
wait "$RPID"; rc=$?
RPID=
[ $rc -eq 0 ] || fail "--forever after SIGTERM: rc $rc: $(cat "$TMP/err")"
read -r sent delivered failed < <(sed -E 's/.*sent=([0-9]+) delivered=([0-9]+) failed=([0-9]+).*/\1 \2 \3/' "$TMP/out")
[ "${delivered:-0}" -ge 100 ] && [ "$sent" = "$delivered" ] && [ "$failed" = 0 ] ||
    fail "--forever summary: $(cat "$TMP/out")"

# A long --interval is cut short by SIGTERM.
"$REPLAY" -b "$B" -t events -f "$SAMPLE" --forever --limit 3 --interval 60 --quiet >"$TMP/out" 2>"$TMP/err" &
RPID=$!
wait_for 20 "[ \$(kcat -C -b '$B' -t events -o beginning -e -q 2>/dev/null | wc -l) -ge 8 ]" ||
    fail "interval run produced nothing"
start=$(date +%s%N)
kill -TERM "$RPID"
timeout 20 tail --pid="$RPID" -f /dev/null || fail "interval not interrupted by SIGTERM"
wait "$RPID"; rc=$?
RPID=
took=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc -eq 0 ] || fail "interval run: rc $rc"
# Cut short: far below the 60 s interval (3 s was too tight under ASan at load 50).
[ $took -lt 20000 ] || fail "SIGTERM during --interval took $took ms"
grep -q '^read=3 sent=3 delivered=3 ' "$TMP/out" || fail "interval summary: $(cat "$TMP/out")"

kill -TERM "$BPID"; wait "$BPID"; BPID=
echo ok
