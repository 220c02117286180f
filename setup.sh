#!/usr/bin/env bash
# setup.sh: install the Debian packages sigflow needs (when root), then configure
# and build into build/ (or --build-dir DIR). Extra arguments go to cmake, e.g.
#   ./setup.sh --build-dir build-asan -DSIGFLOW_SANITIZE=ON
# Idempotent: a second run with nothing changed installs nothing and prints one line.
set -euo pipefail
cd "$(dirname "$0")"

build_dir=build
if [[ ${1:-} == --build-dir ]]; then
    build_dir=$2
    shift 2
fi

# Build tools and libraries, plus what the tests use (kcat as an independent client;
# Java and Maven to run Apache Kafka for the real-broker tests and the bench), and
# for packaging: dpkg-dev and file (cpack's dependency discovery), groff (the
# man-page test renders the pages).
packages=(build-essential cmake pkg-config librdkafka-dev libopenblas-dev libjansson-dev
          libevent-dev libcmocka-dev libhdf5-dev libzip-dev zlib1g-dev libseccomp-dev libdnnl-dev kcat python3
          openjdk-17-jre-headless maven dpkg-dev file groff)

# The fuzzing harnesses need clang and its libFuzzer runtime: only when asked for.
fuzz=0
for a in "$@"; do
    [[ $a == -DSIGFLOW_FUZZ=ON ]] && fuzz=1
done
((fuzz)) && packages+=(clang libclang-rt-14-dev libomp-14-dev) # libomp: clang's omp.h for the oneDNN backend

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup.sh: missing Debian packages: ${missing[*]}" >&2
        echo "setup.sh: run as root, or: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f $build_dir/CMakeCache.txt || $# -gt 0 ]]; then
    if ((fuzz)); then
        export CC=clang
    fi
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
fi
log=$build_dir/build.log
if ! cmake --build "$build_dir" -j "$(nproc)" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup.sh: build failed (full log: $log)" >&2
    exit 1
fi
echo "setup.sh: sigflow built in $build_dir/"

# Apache Kafka's jars (tests/kafka/pom.xml) for tests/kafka/kafka.sh, copied into
# BUILD/kafka/lib; skipped while the copy matches the pom. Maven's ~/.m2 cache
# makes the copy for a second build dir a local one.
kafka_lib=$build_dir/kafka/lib
pom_sum=$(sha256sum tests/kafka/pom.xml | cut -d' ' -f1)
if [[ $(cat "$kafka_lib/.pom.sha256" 2>/dev/null) != "$pom_sum" ]]; then
    rm -rf "$kafka_lib"
    mkdir -p "$build_dir/kafka"
    if mvn -B -q -f tests/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
           -DoutputDirectory="$(cd "$build_dir/kafka" && pwd)/lib" >"$build_dir/kafka/maven.log" 2>&1; then
        echo "$pom_sum" >"$kafka_lib/.pom.sha256"
        echo "setup.sh: Apache Kafka jars in $kafka_lib/"
    else
        echo "setup.sh: Apache Kafka jars missing: Maven could not fetch tests/kafka/pom.xml's dependencies (log: $build_dir/kafka/maven.log); the real-broker tests (ctest -L real) will fail" >&2
    fi
fi
