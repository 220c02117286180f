#!/usr/bin/env bash
# kafka.sh: a throwaway Apache Kafka cluster (KRaft, combined broker+controller
# nodes) on 127.0.0.1, for the real-broker tests, the bench and hand runs. The
# jars come from tests/kafka/pom.xml (setup.sh copies them to BUILD/kafka/lib).
#
#   kafka.sh start DIR [--brokers N]   start N nodes; prints bootstrap=... last
#   kafka.sh stop DIR                  SIGTERM, SIGKILL after a bound; removes DIR
#   kafka.sh kill-node DIR I           SIGKILL node I (0-based)
#   kafka.sh start-node DIR I          restart node I; returns once it is in the metadata
#
# Everything lives under DIR: nodeI/{server.properties,data,server.log,pid}, and
# DIR/bootstrap holds the bootstrap list for the tests to read.
# Environment: SIGFLOW_KAFKA_LIB (jar directory; default BUILD/kafka/lib with
# BUILD = $SIGFLOW_BUILD_DIR or the repository's build/), KAFKA_HEAP (384m).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lib=${SIGFLOW_KAFKA_LIB:-${SIGFLOW_BUILD_DIR:-$root/build}/kafka/lib}
heap=${KAFKA_HEAP:-384m}
ready_s=${KAFKA_READY_TIMEOUT:-150}  # a bound for loaded machines, not the expected time

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_jars() {
    compgen -G "$lib/kafka_2.13-*.jar" >/dev/null ||
        die "no Kafka jars in $lib (run ./setup.sh, which fetches them with Maven)"
    command -v java >/dev/null || die "java not found (setup.sh installs openjdk-17-jre-headless)"
    command -v kcat >/dev/null || die "kcat not found (setup.sh installs it)"
}

# n free TCP ports on 127.0.0.1, from the kernel (bound together so they differ).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Lean JVM: two cores are shared with the daemons under test.
java_opts() {
    echo "-Xms64m -Xmx$heap -XX:+UseSerialGC -XX:CICompilerCount=2 -XX:ReservedCodeCacheSize=64m" \
         "-Xss512k -Xshare:auto -Djava.awt.headless=true -Dlog4j2.configurationFile=$1/log4j2.properties" \
         "-Dkafka.logs.dir=$1"
}

write_node() { # dir i n voters port cport
    local d=$1/node$2 n=$3 rf=$(( $3 < 3 ? $3 : 3 )) isr=$(( $3 < 3 ? 1 : 2 ))
    mkdir -p "$d/data"
    cat >"$d/server.properties" <<PROPS
process.roles=broker,controller
node.id=$2
controller.quorum.voters=$4
listeners=PLAINTEXT://127.0.0.1:$5,CONTROLLER://127.0.0.1:$6
advertised.listeners=PLAINTEXT://127.0.0.1:$5
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
auto.create.topics.enable=true
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# A killed node is fenced (its partitions get new leaders) after 4 s, not 9.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.segment.bytes=67108864
log.retention.check.interval.ms=600000
PROPS
    cat >"$d/log4j2.properties" <<'L4J'
appender.file.type=File
appender.file.name=file
appender.file.fileName=${sys:kafka.logs.dir}/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.kafka.name=org.apache.kafka
logger.kafka.level=INFO
L4J
}

launch() { # dir i
    local d=$1/node$2
    # setsid: the node outlives this script and a test's process group.
    # shellcheck disable=SC2046
    setsid java $(java_opts "$d") -cp "$lib/*" kafka.Kafka "$d/server.properties" \
        </dev/null >"$d/stdout.log" 2>&1 &
    echo $! >"$d/pid"
}

alive() { [[ -f $1/pid ]] && kill -0 "$(cat "$1/pid")" 2>/dev/null; }

# Waits until the cluster has `want` brokers in its metadata and (unless
# brokers_only) a message produced to a fresh topic can be consumed back.
wait_ready() { # dir want [NODE: only until node NODE answers and is listed]
    local dir=$1 want=$2 only=${3:-} bs deadline=$((SECONDS + ready_s)) probe="sigflow-ready-$RANDOM$RANDOM"
    bs=$(cat "$dir/bootstrap")
    while :; do
        for d in "$dir"/node[0-9]*; do
            alive "$d" || { tail -n 30 "$d/server.log" "$d/stdout.log" >&2 2>/dev/null || true; die "node $d exited"; }
        done
        if ((SECONDS >= deadline)); then
            tail -n 20 "$dir"/node[0-9]*/server.log >&2 2>/dev/null || true
            die "cluster in $dir not ready after ${ready_s}s"
        fi
        local n
        n=$(timeout 10 kcat -b "$bs" -L -m 3 2>/dev/null | grep -c '^  broker [0-9]* at' || true)
        if [[ -n $only ]]; then
            # the node itself answers, and the cluster lists it (unfenced) again
            local own
            own=$(grep -o 'PLAINTEXT://[0-9.:]*' "$dir/node$only/server.properties" | head -n 1)
            own=${own#PLAINTEXT://}
            if ((n >= want)) && timeout 10 kcat -b "$own" -L -m 3 2>/dev/null |
                   grep -q "^  broker $only at"; then
                return 0
            fi
            sleep 0.5  # poll interval
            continue
        fi
        if ((n >= want)) &&
           echo ready | timeout 15 kcat -b "$bs" -P -t "$probe" -p 0 -m 3 -X message.timeout.ms=8000 2>/dev/null &&
           [[ $(timeout 15 kcat -b "$bs" -C -t "$probe" -p 0 -o beginning -c 1 -e -q -m 3 2>/dev/null) == ready ]]; then
            return 0
        fi
        sleep 0.5  # poll interval of a deadline-bounded wait
    done
}

cmd=${1:-}; dir=${2:-}
[[ -n $cmd && -n $dir ]] || die "usage: kafka.sh start DIR [--brokers N] | stop DIR | kill-node DIR I | start-node DIR I"

case $cmd in
start)
    n=1
    [[ ${3:-} == --brokers ]] && n=${4:?--brokers needs a number}
    ((n >= 1)) || die "--brokers must be >= 1"
    need_jars
    [[ -e $dir ]] && [[ -n $(ls -A "$dir" 2>/dev/null) ]] && die "$dir exists and is not empty"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    read -r -a ports <<<"$(free_ports $((2 * n)))"
    voters="" bs=""
    for ((i = 0; i < n; i++)); do
        voters+="${voters:+,}$i@127.0.0.1:${ports[2 * i + 1]}"
        bs+="${bs:+,}127.0.0.1:${ports[2 * i]}"
    done
    echo "$bs" >"$dir/bootstrap"
    echo "$n" >"$dir/size"
    # As Kafka's own Uuid.randomUuid: never one that starts with '-', which
    # kafka-storage would take for an option (1 start in 64 failed so).
    cluster_id=$(python3 -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        break
print(s)')
    # formatting starts a JVM per node: in parallel
    fpids=()
    for ((i = 0; i < n; i++)); do
        write_node "$dir" "$i" "$n" "$voters" "${ports[2 * i]}" "${ports[2 * i + 1]}"
        # shellcheck disable=SC2046
        java $(java_opts "$dir/node$i") -cp "$lib/*" kafka.tools.StorageTool format \
            -t "$cluster_id" -c "$dir/node$i/server.properties" >"$dir/node$i/format.log" 2>&1 &
        fpids+=($!)
    done
    for ((i = 0; i < n; i++)); do
        wait "${fpids[i]}" || { cat "$dir/node$i/format.log" >&2; die "formatting node $i failed"; }
    done
    for ((i = 0; i < n; i++)); do launch "$dir" "$i"; done
    wait_ready "$dir" "$n"
    echo "bootstrap=$bs"
    ;;
stop)
    [[ -d $dir ]] || exit 0
    pids=()
    for d in "$dir"/node[0-9]*; do alive "$d" && pids+=("$(cat "$d/pid")"); done
    ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-20}))
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
kill-node)
    i=${3:?node index}
    d=$dir/node$i
    alive "$d" || die "node $i is not running"
    p=$(cat "$d/pid")
    kill -KILL "$p"
    while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
    ;;
start-node)
    i=${3:?node index}
    need_jars
    [[ -f $dir/node$i/server.properties ]] || die "no node $i in $dir"
    alive "$dir/node$i" && die "node $i is running"
    launch "$dir" "$i"
    # the others served throughout: back once it is in the metadata again
    wait_ready "$dir" "$(cat "$dir/size")" "$i"
    ;;
*) die "unknown command $cmd" ;;
esac
