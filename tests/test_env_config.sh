# test_env_config.sh: `sigflow run` takes every option from SIGFLOW_* variables
# and librdkafka properties from SIGFLOW_KAFKA_*, flags win, --print-config
# shows the outcome with secrets masked, and a bad value names its variable.
# No broker: --print-config exits before connecting, and the one real start
# aims at a closed port.
set -u
BIN=$SIGFLOW_BUILD_DIR/sigflow
SRC=$SIGFLOW_SOURCE_DIR
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_env.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; for f in "$TMP"/out "$TMP"/err; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" >&2; done; exit 1; }
# Only the variables a test sets: none inherited from the caller's shell.
clean() { env -u SIGFLOW_BROKERS -u SIGFLOW_MODEL -u SIGFLOW_VARIABLES "$@"; }
expect() { grep -qxF -- "$1" "$TMP/out" || fail "expected line '$1'"; }

# Every option of run --help maps to a variable that --print-config reflects.
clean SIGFLOW_BROKERS=env1:9092,env2:9092 SIGFLOW_MODEL=/env/model.h5 SIGFLOW_VARIABLES=/env/vars.json \
    SIGFLOW_INPUT_TOPIC=in SIGFLOW_OUTPUT_TOPIC=out SIGFLOW_DLQ_TOPIC=dlq SIGFLOW_GROUP=g1 \
    SIGFLOW_ARCHITECTURE=/env/arch.json SIGFLOW_ID_FIELD=Id SIGFLOW_SIGNAL_LABEL=sig \
    SIGFLOW_THRESHOLD=0.75 SIGFLOW_EMIT=all SIGFLOW_BATCH_SIZE=64 SIGFLOW_BATCH_WAIT_MS=9 \
    SIGFLOW_NORMALIZE=l2 SIGFLOW_MAX_EVENT_BYTES=2048 SIGFLOW_EXACTLY_ONCE=true \
    SIGFLOW_TRANSACTIONAL_ID=tx-1 SIGFLOW_METRICS_ADDR=127.0.0.1:9999 SIGFLOW_CONNECT_TIMEOUT_MS=1234 \
    SIGFLOW_LOG_LEVEL=debug SIGFLOW_LOG_FORMAT=json SIGFLOW_BACKEND=onednn SIGFLOW_PRECISION=bf16 \
    SIGFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL SIGFLOW_KAFKA_SASL_PASSWORD=hunter2 \
    SIGFLOW_KAFKA_LOG__LEVEL=7 SIGFLOW_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET=s3cret \
    "$BIN" run --print-config >"$TMP/out" 2>"$TMP/err" || fail "--print-config from the environment: rc $?"
for line in brokers=env1:9092,env2:9092 model=/env/model.h5 variables=/env/vars.json input-topic=in \
            output-topic=out dlq-topic=dlq group=g1 architecture=/env/arch.json id-field=Id signal-label=sig \
            threshold=0.75 emit=all batch-size=64 batch-wait-ms=9 normalize=l2 max-event-bytes=2048 \
            exactly-once=true transactional-id=tx-1 metrics-addr=127.0.0.1:9999 connect-timeout-ms=1234 \
            log-level=debug log-format=json backend=onednn precision=bf16 kafka.security.protocol=SASL_SSL kafka.log_level=7 \
            'kafka.sasl.password=***' 'kafka.sasl.oauthbearer.client.secret=***'; do
    expect "$line"
done
! grep -q 'hunter2\|s3cret' "$TMP/out" || fail "a secret was printed"
# The variables cover every option --help lists, except --help and --print-config.
for opt in $("$BIN" run --help | grep -oE '^  --[a-z-]+' | sed 's/^  --//'); do
    [ "$opt" = print-config ] && continue
    grep -q "^$opt=" "$TMP/out" || fail "--print-config does not show --$opt"
done

# Flags win over variables; -X over SIGFLOW_KAFKA_* for the same property
# (it comes later, and librdkafka keeps the last value).
clean SIGFLOW_BROKERS=env:9092 SIGFLOW_MODEL=/env/m.h5 SIGFLOW_VARIABLES=/env/v.json SIGFLOW_BATCH_SIZE=64 \
    SIGFLOW_KAFKA_CLIENT_ID=from-env SIGFLOW_KAFKA_SSL_KEY_PASSWORD=pw1 SIGFLOW_KAFKA_SSL_CIPHER___SUITES=x \
    "$BIN" run --brokers flag:9092 --batch-size 128 -X client.id=from-flag -X sasl.username=bob \
    --print-config >"$TMP/out" 2>"$TMP/err" || fail "flags and variables: rc $?"
expect brokers=flag:9092
expect batch-size=128
expect model=/env/m.h5
expect 'kafka.ssl.key.password=***'
expect kafka.ssl.cipher-suites=x
expect kafka.sasl.username=bob
[ "$(grep -n '^kafka.client.id=' "$TMP/out" | tail -1 | cut -d= -f2)" = from-flag ] || fail "-X does not come after the variable"
! grep -q pw1 "$TMP/out" || fail "ssl.key.password printed"

# Properties from -F FILE are shown too, in order, secrets masked.
printf 'sasl.password=fromfile\n# a comment\nclient.id=file-client\n' >"$TMP/kafka.properties"
clean "$BIN" run -b b:1 -m m --variables v -F "$TMP/kafka.properties" -X client.id=flag --print-config \
    >"$TMP/out" 2>"$TMP/err" || fail "-F: rc $?"
expect 'kafka.sasl.password=***'
[ "$(grep '^kafka.client.id=' "$TMP/out" | tr '\n' ' ')" = "kafka.client.id=file-client kafka.client.id=flag " ] ||
    fail "-F and -X order: $(grep '^kafka' "$TMP/out")"
! grep -q fromfile "$TMP/out" || fail "a secret from -F was printed"

# The issue's reproduction: a JAAS line from the environment is refused
# without its password (a usage error).
clean SIGFLOW_KAFKA_SASL_JAAS_CONFIG='x password="s3cret";' "$BIN" run -b 127.0.0.1:1 -m m --variables v \
    >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -eq 2 ] && grep -q "sasl.jaas.config" "$TMP/err" || fail "JAAS from the environment: rc $rc"
! grep -q s3cret "$TMP/out" "$TMP/err" || fail "the JAAS password was printed"

# Switches: 0/false/no/empty leave it off.
for off in 0 false no ""; do
    clean SIGFLOW_EXACTLY_ONCE="$off" "$BIN" run -b b:1 -m m --variables v --print-config >"$TMP/out" 2>"$TMP/err" || fail "switch '$off'"
    expect exactly-once=false
done

# A bad value names the variable; status 2 as for a bad flag.
clean SIGFLOW_BATCH_SIZE=lots "$BIN" run -b b:1 -m m --variables v --print-config >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -eq 2 ] || fail "bad SIGFLOW_BATCH_SIZE: rc $rc"
grep -q "SIGFLOW_BATCH_SIZE (--batch-size) 'lots'" "$TMP/err" || fail "bad SIGFLOW_BATCH_SIZE message"
clean "$BIN" run -b b:1 -m m --variables v --batch-size lots >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -eq 2 ] && grep -q "^sigflow run: --batch-size 'lots'" "$TMP/err" || fail "bad --batch-size message"
clean SIGFLOW_EXACTLY_ONCE=maybe "$BIN" run -b b:1 -m m --variables v --print-config >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -eq 2 ] && grep -q "SIGFLOW_EXACTLY_ONCE 'maybe'" "$TMP/err" || fail "bad switch: rc $rc"
# --help and --print-config never come from the environment.
clean SIGFLOW_HELP=1 SIGFLOW_PRINT_CONFIG=1 "$BIN" run >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -eq 2 ] && grep -q "required" "$TMP/err" || fail "SIGFLOW_HELP/PRINT_CONFIG were taken: rc $rc"

# The variables reach the daemon itself: it starts with them and fails on the
# closed port they name, logging in the format they ask for.
clean SIGFLOW_BROKERS=127.0.0.1:1 SIGFLOW_CONNECT_TIMEOUT_MS=300 SIGFLOW_METRICS_ADDR=none \
    SIGFLOW_MODEL="$SRC/models/higgs_mlp.h5" SIGFLOW_VARIABLES="$SRC/models/higgs_variables.json" \
    SIGFLOW_LOG_FORMAT=json timeout 60 "$BIN" run >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "daemon with an unreachable SIGFLOW_BROKERS: rc $rc"
grep -q "cannot reach brokers 127.0.0.1:1 within 300 ms" "$TMP/err" || fail "daemon did not use the variables"
grep '^{' "$TMP/err" | head -1 | grep -q '"level":' || fail "SIGFLOW_LOG_FORMAT=json not applied"
echo "environment configuration: ok"
