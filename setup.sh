#!/usr/bin/env bash
# setup.sh: install the Debian packages sigflow needs (when root), then configure
# and build into build/ (or --build-dir DIR). Extra arguments go to cmake, e.g.
#   ./setup.sh --build-dir build-asan -DSIGFLOW_SANITIZE=ON
# Idempotent: a second run with nothing changed installs nothing and prints one line.
# Before the cmake arguments, for the container image's build stage (Containerfile):
#   --packages-only  install the packages and stop (a layer of its own, cached
#                    while the source changes)
#   --no-test-tools  leave out what only the tests run: kcat, Python, groff, lintian,
#                    systemd, Apache Kafka (Java, Maven, the jars), podman, debootstrap
set -euo pipefail
cd "$(dirname "$0")"

build_dir=build packages_only=0 test_tools=1
while (($#)); do
    case $1 in
    --build-dir) build_dir=$2; shift 2 ;;
    --packages-only) packages_only=1; shift ;;
    --no-test-tools) test_tools=0; shift ;;
    *) break ;;
    esac
done

# Build tools and libraries, and for packaging dpkg-dev and file (cpack's
# dependency discovery); then what the tests run: kcat as an independent client,
# Python, groff (the man-page test renders the pages), Java and Maven to run
# Apache Kafka for the real-broker tests and the bench, lintian and systemd
# (test_deb: the package's policy, systemd-analyze verify and security on the
# unit), and for the container test podman, runc (crun refuses hybrid cgroups),
# catatonit (the pause process of `podman kube play`'s pods) and debootstrap
# (the base images).
packages=(build-essential cmake pkg-config librdkafka-dev libopenblas-dev libjansson-dev
          libevent-dev libcmocka-dev libhdf5-dev libzip-dev zlib1g-dev libseccomp-dev libdnnl-dev dpkg-dev file)
((test_tools)) && packages+=(kcat python3 groff openjdk-17-jre-headless maven lintian systemd
                             podman runc catatonit debootstrap)

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
((packages_only)) && exit 0

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
((test_tools)) || exit 0
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
