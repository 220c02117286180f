# test_container.sh: sigflow deployed as its users deploy Kafka consumers, on
# this machine with podman. It builds the image (Containerfile) from base images
# made here with debootstrap (contrib/container/make-base.sh), checks its size,
# user and `demo`, lints and renders the Helm chart (contrib/kubernetes/ must be
# its default rendering), and then runs two instances in one consumer group
# with `podman kube play` on the rendered Deployment against a three-node
# Apache Kafka (RF 3), --exactly-once: one is stopped with `podman stop` while
# the sample streams in, its partitions move to the other, and a
# read_committed reader sees every signal the model gives exactly once. The
# survivor's /metrics is scraped and its health check run; last, the image's
# default command (the daemon from SIGFLOW_* variables) and its own HEALTHCHECK.
#
# Skipped (status 77, one line) where podman, debootstrap or root is missing,
# or helm can be neither found nor installed with Go. Each phase prints its time.
set -u
SRC=$SIGFLOW_SOURCE_DIR
BUILD=$SIGFLOW_BUILD_DIR
HELM_VERSION=v3.22.1
MAX_IMAGE_BYTES=200000000
WAIT_S=180 # a bound for a loaded machine, not the expected time

skip() { echo "SKIP: $*, the container image and the manifests are not checked"; exit 77; }
command -v podman >/dev/null || skip "podman not installed"
command -v debootstrap >/dev/null || skip "debootstrap not installed"
[ "$(id -u)" -eq 0 ] || skip "not root (debootstrap needs it)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_container.XXXXXX")
run_id=sfct$$
IMAGE=localhost/sigflow:ctest
KAFKA=$TMP/kafka
cleanup() {
    for y in "$TMP"/play-*.yaml; do [ -f "$y" ] && podman kube down "$y" >/dev/null 2>&1; done
    podman rm -f -t 0 "$run_id-run" >/dev/null 2>&1
    [ -n "${feed_pid:-}" ] && kill "$feed_pid" 2>/dev/null
    bash "$SRC/tests/kafka/kafka.sh" stop "$KAFKA" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' TERM INT # ctest's timeout: clean up too (the Kafka nodes outlive us otherwise)
fail() {
    echo "FAIL: $*" >&2
    for c in $(podman ps -a --format '{{.Names}}' --filter "name=$run_id" 2>/dev/null); do
        echo "  $c:" >&2
        podman logs --tail 15 "$c" 2>&1 | sed 's/^/    /' >&2
    done
    exit 1
}
t0=$SECONDS
phase() { echo "[$((SECONDS - t0)) s] $*"; }

# This machine's podman needs runc (crun refuses the host's hybrid cgroups),
# the host network and explicit rlimits; a private containers.conf gives every
# podman command below (build, run, kube play) the same settings.
{
    echo '[containers]'
    echo 'netns = "host"'
    echo 'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]'
    if command -v runc >/dev/null; then
        echo '[engine]'
        echo 'runtime = "runc"'
    fi
} >"$TMP/containers.conf"
export CONTAINERS_CONF=$TMP/containers.conf

# helm, pinned: on the PATH at that version, else built once with Go into the cache.
cache=${SIGFLOW_IMAGE_CACHE:-/var/cache/sigflow}
mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=${XDG_CACHE_HOME:-$HOME/.cache}/sigflow
HELM=$cache/helm-$HELM_VERSION/helm
if command -v helm >/dev/null && [ "$(helm version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    HELM=$(command -v helm)
elif [ ! -x "$HELM" ]; then
    command -v go >/dev/null || skip "helm $HELM_VERSION not found and no Go to build it"
    phase "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mkdir -p "$(dirname "$HELM")"
    GOBIN=$(dirname "$HELM") go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$TMP/go.log" 2>&1 ||
        { tail -n 20 "$TMP/go.log" >&2; fail "go install helm $HELM_VERSION"; }
fi
CHART=$SRC/contrib/helm/sigflow

# --- the chart: lint, the shipped manifests are its rendering, no secret in it
"$HELM" lint --strict "$CHART" >"$TMP/lint" 2>&1 || { cat "$TMP/lint" >&2; fail "helm lint"; }
"$HELM" template sigflow "$CHART" >"$TMP/default.yaml" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "helm template"; }
diff -u "$SRC/contrib/kubernetes/sigflow.yaml" "$TMP/default.yaml" >"$TMP/diff" ||
    { head -n 40 "$TMP/diff" >&2; fail "contrib/kubernetes/sigflow.yaml is not the chart's rendering (contrib/kubernetes/README.md: how to render it)"; }
for kind in Deployment ConfigMap Service ServiceMonitor PodDisruptionBudget ScaledObject TriggerAuthentication; do
    grep -qx "kind: $kind" "$TMP/default.yaml" || fail "the rendering has no $kind"
done
! grep -qx 'kind: Secret' "$TMP/default.yaml" || fail "the rendering holds a Secret"
grep -q 'secretKeyRef' "$TMP/default.yaml" || fail "SASL credentials do not come from a Secret"
grep -q 'maxReplicaCount: 12' "$TMP/default.yaml" || fail "the autoscaler is not capped at the partitions"
"$HELM" template x "$CHART" --set extraConfig.SIGFLOW_KAFKA_SASL_PASSWORD=hunter2 >/dev/null 2>"$TMP/err" &&
    fail "the chart put a password into its ConfigMap"
grep -q 'looks like a secret' "$TMP/err" || fail "a password in extraConfig: $(cat "$TMP/err")"
# the model's other sources: a PVC, an init container, both on /models
"$HELM" template x "$CHART" --set model.source=pvc,model.pvc.claimName=models 2>"$TMP/err" |
    grep -q 'claimName: models' || fail "model.source=pvc: $(cat "$TMP/err")"
"$HELM" template x "$CHART" --set model.source=initContainer,model.initContainer.image=fetch 2>"$TMP/err" |
    grep -q 'initContainers:' || fail "model.source=initContainer: $(cat "$TMP/err")"
"$HELM" template x "$CHART" --set model.source=elsewhere >/dev/null 2>&1 && fail "model.source=elsewhere rendered"
phase "helm lint + template ($("$HELM" version --template '{{.Version}}' 2>/dev/null), $HELM)"

# --- the image, from locally made Debian bases (cached per day)
bases=$("$SRC/contrib/container/make-base.sh" 2>"$TMP/base.log") || { cat "$TMP/base.log" >&2; fail "make-base.sh"; }
build_image=$(echo "$bases" | sed -n 1p)
base_image=$(echo "$bases" | sed -n 2p)
phase "base images $build_image, $base_image"
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null)
podman build --format docker --network host --build-arg "BUILD_IMAGE=$build_image" \
    --build-arg "BASE_IMAGE=$base_image" -t "$IMAGE" -f "$SRC/Containerfile" "$SRC" >"$TMP/build.log" 2>&1 ||
    { tail -n 30 "$TMP/build.log" >&2; fail "podman build"; }
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
# The build stage's image is tagged too, so that pruning the untagged images
# built on our bases drops only earlier runs' (the cache of this one stays).
build_stage=$(awk '/^\[2\/2\]/ {print last; exit} /^--> [0-9a-f]+$/ {last = $2}' "$TMP/build.log")
[ -n "$build_stage" ] && podman tag "$build_stage" "$IMAGE-build"
[ -n "$old" ] && [ "$old" != "$new" ] && podman rmi "$old" >/dev/null 2>&1
podman image prune -f --filter label=org.sigflow.base >/dev/null 2>&1
cached=$(grep -c -- '--> Using cache' "$TMP/build.log")
phase "podman build ($cached steps from the layer cache)"

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1000000)) MB"
[ "$size" -le "$MAX_IMAGE_BYTES" ] || fail "the image is $size bytes, over $MAX_IMAGE_BYTES"
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = 10001:10001 ] || fail "the image's user is not 10001"
[ "$(podman image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")" = '["sigflow"]' ] || fail "entrypoint"
podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" | grep -q healthz || fail "no HEALTHCHECK in the image"

# `podman run IMAGE demo`, no other argument: the summary of ./build/sigflow demo
# (the counts and the backend; the broker's port, the timings, the batching
# and which signals come first vary from run to run).
summary() { grep -E '^(events in|predicted|signals published|dead letters|forward pass):' "$1"; }
# (timeout: a demo once hung in its consumer's close, pipeline.c's on_rebalance)
timeout 120 podman run --rm "$IMAGE" demo >"$TMP/demo.ctr" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] || { cat "$TMP/err" >&2; fail "podman run IMAGE demo: status $rc"; }
env -u OPENBLAS_NUM_THREADS timeout 120 "$BUILD/sigflow" demo >"$TMP/demo.host" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] || { cat "$TMP/err" >&2; fail "sigflow demo: status $rc"; }
diff <(summary "$TMP/demo.host") <(summary "$TMP/demo.ctr") >"$TMP/diff" ||
    { cat "$TMP/diff" >&2; fail "podman run IMAGE demo differs from sigflow demo"; }
[ "$(summary "$TMP/demo.ctr" | wc -l)" -eq 5 ] || fail "demo summary: $(cat "$TMP/demo.ctr")"
phase "podman run IMAGE demo = sigflow demo: $(grep '^signals published' "$TMP/demo.ctr")"

# --- three-node Apache Kafka, RF 3; topics made up front (4 partitions each)
bash "$SRC/tests/kafka/kafka.sh" start "$KAFKA" --brokers 3 >"$TMP/kafka.log" 2>&1 ||
    { tail -n 20 "$TMP/kafka.log" >&2; fail "kafka.sh start --brokers 3"; }
bs=$(cat "$KAFKA/bootstrap")
in=$run_id.events out=$run_id.signals group=$run_id
for t in "$in" "$out" "$run_id.dlq" "$run_id.signals2"; do
    deadline=$((SECONDS + WAIT_S))
    until kcat -b "$bs" -L -t "$t" -m 5 2>/dev/null | grep -q "topic \"$t\" with 4 partitions"; do
        ((SECONDS < deadline)) || fail "topic $t was not created"
        sleep 0.5 # poll interval
    done
done
phase "Apache Kafka, 3 nodes at $bs"

# --- two instances, one group: the chart's Deployment under podman kube play.
# Host network (containers.conf's netns does not reach kube play's pods), so
# each release gets its own metrics port (two replicas of one Deployment would
# share it).
read -r port_a port_b port_c <<<"$(python3 -c 'import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
render() { # release port
    "$HELM" template "$1" "$CHART" --set replicas=1,autoscaling.enabled=false \
        --set-string "kafka.brokers=${bs//,/\\,},kafka.inputTopic=$in,kafka.outputTopic=$out,kafka.dlqTopic=$run_id.dlq" \
        --set-string "kafka.group=$group,kafka.securityProtocol=PLAINTEXT,metrics.port=$2" \
        --set-string "image.repository=${IMAGE%:*},image.tag=${IMAGE##*:},image.pullPolicy=Never" \
        >"$TMP/play-$1.yaml" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "helm template $1"; }
    podman kube play --network host "$TMP/play-$1.yaml" >"$TMP/play-$1.log" 2>&1 ||
        { cat "$TMP/play-$1.log" >&2; fail "podman kube play $1"; }
}
render "$run_id-a" "$port_a"
render "$run_id-b" "$port_b"
ctr_a=$run_id-a-pod-0-sigflow ctr_b=$run_id-b-pod-0-sigflow
podman container exists "$ctr_a" && podman container exists "$ctr_b" || fail "kube play made $(podman ps -a --format '{{.Names}}' | grep "$run_id" | tr '\n' ' ')"

metric() { # port series: its value, or nothing
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v s="$2" '$1 == s {print $2}'
}
running() { [ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
# Waits until the instances on these ports own `want` partitions together,
# each at least one.
wait_assigned() { # want port...
    local want=$1 deadline=$((SECONDS + WAIT_S)) sum idle p n
    shift
    while :; do
        sum=0 idle=0
        for p in "$@"; do
            n=$(metric "$p" sigflow_assigned_partitions)
            sum=$((sum + ${n:-0}))
            [ "${n:-0}" -ge 1 ] || idle=1
        done
        [ "$sum" -eq "$want" ] && [ $idle -eq 0 ] && return 0
        ((SECONDS < deadline)) || fail "instances on ports $* own $sum partitions (one none: $idle), not $want"
        for c in "$ctr_a" "$ctr_b"; do running "$c" || [ "$c" = "${stopped:-}" ] || fail "$c exited"; done
        sleep 0.2 # poll interval
    done
}
wait_assigned 4 "$port_a" "$port_b"
phase "kube play: $ctr_a and $ctr_b share the 4 partitions"

# --- the sample in two halves: the first streams (1000 events/s) while
# instance a is stopped, the second once its partitions have moved.
sample=$SRC/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz
zcat "$sample" | sed -n '1,10001p' >"$TMP/half1.csv"
zcat "$sample" | sed -n '1p;10002,$p' >"$TMP/half2.csv"
n_events=$(($(zcat "$sample" | wc -l) - 1))
"$BUILD/sigflow-replay" -q -b "$bs" -t "$in" -f "$TMP/half1.csv" --rate 1000 >"$TMP/feed1.log" 2>&1 &
feed_pid=$!
deadline=$((SECONDS + WAIT_S))
until [ "$(metric "$port_a" sigflow_signals_published_total || echo 0)" -ge 100 ] 2>/dev/null; do
    ((SECONDS < deadline)) || fail "instance a published fewer than 100 signals"
    sleep 0.1 # poll interval
done
kill -0 "$feed_pid" 2>/dev/null && streaming=yes || streaming=no
a_published=$(metric "$port_a" sigflow_signals_published_total)
stopped=$ctr_a
podman stop -t 45 "$ctr_a" >/dev/null || fail "podman stop $ctr_a"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$ctr_a")" = 0 ] ||
    fail "$ctr_a exited $(podman inspect --format '{{.State.ExitCode}}' "$ctr_a") on SIGTERM, not 0"
wait_assigned 4 "$port_b"
phase "podman stop $ctr_a (exit 0; feed still running: $streaming; $a_published signals published by it): its partitions moved to b"
wait "$feed_pid" || { cat "$TMP/feed1.log" >&2; fail "replay of the first half"; }
feed_pid=
"$BUILD/sigflow-replay" -q -b "$bs" -t "$in" -f "$TMP/half2.csv" >"$TMP/feed2.log" 2>&1 ||
    { cat "$TMP/feed2.log" >&2; fail "replay of the second half"; }

# --- every signal exactly once: what the model says of the events in the topic
kcat -C -b "$bs" -t "$in" -o beginning -e -q -f '%s\n' >"$TMP/events.jsonl" 2>"$TMP/err" || fail "reading $in"
[ "$(wc -l <"$TMP/events.jsonl")" -eq "$n_events" ] || fail "$in holds $(wc -l <"$TMP/events.jsonl") events, not $n_events"
env -u OPENBLAS_NUM_THREADS "$BUILD/sigflow" predict --model "$SRC/models/higgs_mlp.h5" \
    --variables "$SRC/models/higgs_variables.json" <"$TMP/events.jsonl" 2>"$TMP/err" |
    python3 -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r["label"] == "s":
        print(r["EventId"])' | sort >"$TMP/expected" || fail "sigflow predict: $(tail -n 3 "$TMP/err")"
n_expected=$(wc -l <"$TMP/expected")
deadline=$((SECONDS + WAIT_S))
while :; do
    kcat -C -b "$bs" -t "$out" -o beginning -e -q -X isolation.level=read_committed -f '%k\n' 2>/dev/null |
        sort >"$TMP/got"
    [ "$(wc -l <"$TMP/got")" -ge "$n_expected" ] && break
    ((SECONDS < deadline)) || break
    running "$ctr_b" || fail "$ctr_b exited"
    sleep 0.5 # poll interval
done
missing=$(comm -23 "$TMP/expected" <(uniq "$TMP/got") | wc -l)
extra=$(comm -13 "$TMP/expected" <(uniq "$TMP/got") | wc -l)
twice=$(uniq -d "$TMP/got" | wc -l)
echo "$n_events events, $n_expected signals by sigflow predict; read_committed: $(wc -l <"$TMP/got") outputs, $missing missing, $twice published twice, $extra not signals"
[ "$missing" -eq 0 ] && [ "$twice" -eq 0 ] && [ "$extra" -eq 0 ] || fail "not every signal exactly once"
phase "every signal exactly once"

# Runs NAME's health check now (podman runs it on a timer only with systemd)
# and wants its status to be healthy.
healthy() {
    podman healthcheck run "$1" >"$TMP/health" 2>&1 || fail "health check of $1: $(cat "$TMP/health")"
    [ "$(podman inspect --format '{{.State.Health.Status}}' "$1")" = healthy ] ||
        fail "$1 is $(podman inspect --format '{{.State.Health.Status}}' "$1")"
}

# --- the survivor's /metrics and its health check (podman kube play turns the
# liveness probe on /healthz into the container's health check)
curl -fsS --max-time 5 "http://127.0.0.1:$port_b/metrics" >"$TMP/metrics" || fail "scraping $ctr_b's /metrics"
for s in sigflow_events_consumed_total sigflow_signals_published_total sigflow_consumer_lag \
         sigflow_assigned_partitions 'sigflow_model_info{'; do
    grep -q "^$s" "$TMP/metrics" || fail "/metrics lacks $s"
done
healthy "$ctr_b"
phase "$ctr_b: /metrics scraped ($(grep -c '^sigflow_' "$TMP/metrics") series), health check: healthy"

# --- the image's default command: the daemon from SIGFLOW_* variables, and its
# own HEALTHCHECK (/healthz on SIGFLOW_METRICS_ADDR's port)
podman run -d --name "$run_id-run" -e "SIGFLOW_BROKERS=$bs" -e "SIGFLOW_INPUT_TOPIC=$in" \
    -e "SIGFLOW_OUTPUT_TOPIC=$run_id.signals2" -e "SIGFLOW_GROUP=$run_id-2" \
    -e "SIGFLOW_METRICS_ADDR=0.0.0.0:$port_c" "$IMAGE" >/dev/null 2>"$TMP/err" || fail "podman run IMAGE: $(cat "$TMP/err")"
wait_assigned 4 "$port_c"
healthy "$run_id-run"
podman stop -t 45 "$run_id-run" >/dev/null
[ "$(podman inspect --format '{{.State.ExitCode}}' "$run_id-run")" = 0 ] || fail "podman run IMAGE: not exit 0 on stop"
phase "podman run IMAGE (sigflow run from SIGFLOW_*): owned the 4 partitions, HEALTHCHECK healthy, exit 0 on stop"
