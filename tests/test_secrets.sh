# test_secrets.sh: no credential is ever printed (issue 28). Sentinel secrets
# given through -X, -F (a Java client's properties file with a JAAS line among
# them) and SIGFLOW_KAFKA_* are looked for in every stdout and stderr of run,
# predict, demo, sigflow-replay and sigflow-bench, in run's /metrics and
# --print-config, on the paths that succeed and on those that refuse a
# property; found nowhere. Also Kafka Connect's scoping: the daemon started
# with the README's -X examples and sigflow-bench with its own defaults log no
# CONFWARN, and bootstrap.servers from -F stands for --brokers.
set -u
SF=$SIGFLOW_BUILD_DIR/sigflow
REPLAY=$SIGFLOW_BUILD_DIR/sigflow-replay
BENCH=$SIGFLOW_BUILD_DIR/sigflow-bench
MODEL=$SIGFLOW_SOURCE_DIR/models/higgs_mlp.h5
VARS=$SIGFLOW_SOURCE_DIR/models/higgs_variables.json
SAMPLE=$SIGFLOW_SOURCE_DIR/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_secrets.XXXXXX")
BPID= RPID=
cleanup() {
    [ -n "$RPID" ] && kill -KILL "$RPID" 2>/dev/null
    [ -n "$BPID" ] && kill -KILL "$BPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_for() { local limit=$1; shift; timeout "$limit" bash -c "until $*; do sleep 0.05; done"; }

"$SF" broker --partitions 2 >"$TMP/broker.out" 2>/dev/null &
BPID=$!
wait_for 30 "[ -s '$TMP/broker.out' ]" || fail "broker did not start"
B=$(sed -n '1s/^bootstrap=//p' "$TMP/broker.out")

# A Java client's file: bootstrap.servers instead of --brokers, a JAAS line
# over three lines, a scoped property.
cat >"$TMP/client.properties" <<EOF
bootstrap.servers=$B
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\
    username="alice" \\
    password="SENTINEL_JAAS";
consumer.session.timeout.ms=6000
ssl.key.password=SENTINEL_FILE
EOF
export SIGFLOW_KAFKA_SSL_KEYSTORE_PASSWORD=SENTINEL_ENV
export SIGFLOW_KAFKA_SASL_PASSWORD=SENTINEL_ENV2
OUTS=()
out() { o=$TMP/$1; OUTS+=("$o.out" "$o.err"); } # sets o, the outputs' stem

# The daemon: configured, serving, scraped, stopped.
out run
"$SF" run --model "$MODEL" --variables "$VARS" -F "$TMP/client.properties" \
    -X sasl.username=bob -X producer.sasl.password=SENTINEL_X -X session.timeout.ms=6000 \
    -X linger.ms=5 --metrics-addr 127.0.0.1:0 --log-level debug >"$o.out" 2>"$o.err" &
RPID=$!
wait_for 60 "grep -q 'assigned partitions' '$o.err' || ! kill -0 $RPID" && kill -0 $RPID || fail "run did not join: $(tail -5 "$o.err")"
port=$(sed -n 's/.*metrics on .*port=\([0-9]*\).*/\1/p' "$o.err" | head -n1)
[ -n "$port" ] || fail "no metrics port"
python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://127.0.0.1:$port/metrics" >"$TMP/metrics.out" || fail "scrape"
OUTS+=("$TMP/metrics.out")
kill -TERM $RPID; wait $RPID; rc=$?; RPID=
[ $rc -eq 0 ] || fail "run: rc $rc"
# (librdkafka rightly warns that the sasl.username given here wants a
# sasl.mechanism: this test's own settings, not sigflow's nor the README's.)
! grep CONFWARN "$o.err" | grep -v "sasl.username. only applies" ||
    fail "run logged a CONFWARN: $(grep CONFWARN "$o.err")"

out print
"$SF" run --model "$MODEL" --variables "$VARS" -F "$TMP/client.properties" -X producer.sasl.password=SENTINEL_X \
    --print-config >"$o.out" 2>"$o.err" || fail "--print-config: rc $?"
grep -qx "brokers=$B" "$o.out" || fail "bootstrap.servers from -F did not stand for --brokers"
grep -qx "kafka.sasl.username=alice" "$o.out" || fail "the JAAS line was not translated"
grep -qx "kafka.sasl.password=\*\*\*" "$o.out" || fail "the JAAS password is not there, masked"
grep -qx "kafka.producer.sasl.password=\*\*\*" "$o.out" || fail "the scoped password is not there, masked"

# Refused properties: the message names the property, never its value.
i=0
for x in sasl.oauthbearer.client.secret=SENTINEL_REFUSED 'sasl.jaas.config=SENTINEL_REFUSED' \
         'sasl.password:SENTINEL_REFUSED' 'consumer.sasl.jaas.config=com.example.Login required password="SENTINEL_REFUSED";' \
         'sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientSecret="SENTINEL_REFUSED";'; do
    i=$((i + 1))
    out "refused$i"
    "$SF" run -b "$B" --model "$MODEL" --variables "$VARS" -X "$x" >"$o.out" 2>"$o.err"; rc=$?
    [ $rc -eq 2 ] || fail "run -X $x: rc $rc"
    out "refused_json$i"
    "$SF" run -b "$B" --model "$MODEL" --variables "$VARS" -X "$x" --log-format json >"$o.out" 2>"$o.err"
    out "refused_replay$i"
    "$REPLAY" -b "$B" -t events -f "$SAMPLE" -X "$x" >"$o.out" 2>"$o.err"; rc=$?
    [ $rc -eq 2 ] || fail "sigflow-replay -X $x: rc $rc"
    out "refused_bench$i"
    "$BENCH" --quick -X "$x" >"$o.out" 2>"$o.err"; rc=$?
    [ $rc -eq 2 ] || fail "sigflow-bench -X $x: rc $rc"
done
grep -q "for module org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule write sasl.mechanism=OAUTHBEARER" \
    "$TMP/refused5.err" || fail "OAuth JAAS advice: $(cat "$TMP/refused5.err")"
printf 'sasl.password SENTINEL_REFUSED\n' >"$TMP/bad.properties"
out refused_file
"$SF" run -b "$B" --model "$MODEL" --variables "$VARS" -F "$TMP/bad.properties" >"$o.out" 2>"$o.err"

# The other binaries, given the same.
out replay
"$REPLAY" -t events -f "$SAMPLE" --limit 200 -F "$TMP/client.properties" -X sasl.password=SENTINEL_X \
    >"$o.out" 2>"$o.err" || fail "sigflow-replay: rc $?"
out bench
grep -v bootstrap.servers "$TMP/client.properties" >"$TMP/bench.properties" # its own broker
"$BENCH" --quick --seconds 0.5 --warmup 0 --limit-seconds 0.05 -F "$TMP/bench.properties" \
    -X sasl.password=SENTINEL_X >"$o.out" 2>"$o.err" || fail "sigflow-bench: rc $?"
! grep CONFWARN "$o.err" | grep -v "sasl.username. only applies" ||
    fail "sigflow-bench logged a CONFWARN: $(grep CONFWARN "$o.err")"
out predict
head -c 2000 /dev/null | "$SF" predict --model "$MODEL" --variables "$VARS" >"$o.out" 2>"$o.err" ||
    fail "predict: rc $?"
out demo
"$SF" demo --limit 200 --log-level debug >"$o.out" 2>"$o.err" || fail "demo: rc $?"

[ ${#OUTS[@]} -ge 50 ] || fail "only ${#OUTS[@]} outputs collected"
for f in "${OUTS[@]}"; do
    [ -e "$f" ] || fail "no output $f"
    ! grep -l SENTINEL "$f" || fail "a secret in $(basename "$f"): $(grep SENTINEL "$f")"
done
echo "no sentinel in ${#OUTS[@]} outputs"
