#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS [HARNESS...]: runs each libFuzzer harness (event,
# vars, model, arch, onnx, csv, http; default all) for SECONDS, one after the other, from the
# committed seeds plus the corpus it grew before. Exits non-zero when any harness
# found something (crash, leak, sanitizer report, failed check, timeout, OOM) and
# prints the reproducer. Needs the fuzz build:
#   ./setup.sh --build-dir build-fuzz -DSIGFLOW_FUZZ=ON
# SIGFLOW_FUZZ_BUILD (default build-fuzz) and SIGFLOW_FUZZ_OUT (default
# $SIGFLOW_FUZZ_BUILD/fuzz-out) move things; extra libFuzzer flags go in
# SIGFLOW_FUZZ_FLAGS (e.g. -jobs=2 -workers=2).
#
# The model harness loads through the isolation of src/model_guard.c: libhdf5
# crashing or hanging in the loader's child is a refused load, not a finding.
set -uo pipefail
cd "$(dirname "$0")/../.."
src=$PWD

secs=${1:-}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "usage: tests/fuzz/run.sh SECONDS [event vars model arch onnx csv http]" >&2; exit 2; }
shift
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(event vars model arch onnx csv http)
build=${SIGFLOW_FUZZ_BUILD:-build-fuzz}
out=${SIGFLOW_FUZZ_OUT:-$build/fuzz-out}

# Per-input time limits are generous: the machine is shared and the sanitizers
# slow everything; a real hang still shows (the loader's own limit is 5 s here).
# -rss_limit_mb leaves room for ASan's shadow and quarantine.
declare -A max_len=([event]=4096 [vars]=8192 [model]=65536 [arch]=32768 [onnx]=16384 [csv]=8192 [http]=4096)
declare -A timeout=([event]=20 [vars]=20 [model]=60 [arch]=20 [onnx]=20 [csv]=20 [http]=60)

seed() { # $1 harness, $2 seed dir to fill
    case $1 in
        event | http | arch | onnx) cp "$src/tests/fuzz/seeds/$1/"* "$2/" ;;
        vars) cp "$src"/tests/fixtures/vars_*.json "$2/" ;;
        model) cp "$src"/tests/fixtures/model_{mlp,mlp_vlen,bn,functional,three}.h5 \
                  "$src"/tests/fixtures/bad_{missing_layer,missing_weight,truncated}.h5 \
                  "$src"/tests/fixtures/keras/{k3_mlp,k215_nested,k2_linear1,bad_no_config,bad_weights_text}.keras \
                  "$2/" ;;
        csv) cp "$src"/tests/fixtures/csv_* "$2/" ;;
    esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/tests/lsan.supp:print_suppressions=0}
# The model harness's inputs are parsed in the sandboxed loader program
# (libexec/sigflow/sigflow-loader). A crash there (a sanitizer error ends it
# with SIGABRT, unreported; the harness saves the input in artifacts/, see
# FUZZ_MODEL_SAVE_DIR below) is contained by the sandbox when it happened
# inside libhdf5; anywhere else (sigflow's loader) it is a finding. Each such input is replayed in this process
# (FUZZ_MODEL_INPROCESS=1) and judged by the top frames of its report. A run
# with FUZZ_MODEL_INPROCESS=1 (and -fork=1 -ignore_crashes=1 in
# SIGFLOW_FUZZ_FLAGS) is judged the same way, input by input.
classify_contained() { # $1 harness binary, $2 its output dir; 1 if any is ours
    local bin=$1 dir=$2 a frames contained=0 ours=0 gone=0
    for a in "$dir"/artifacts/*; do
        [[ -f $a && $a != *.replay ]] || continue
        # The parent's own (a finding, reported below), unless the loader ran in it.
        [[ ${FUZZ_MODEL_INPROCESS:-} != 1 ]] && grep -qF "$a" "$dir/log" && continue
        FUZZ_MODEL_INPROCESS=1 "$bin" -timeout=30 -rss_limit_mb=4096 "$a" >"$a.replay" 2>&1
        # The top three frames below the sanitizers', libFuzzer's and libc's own
        # (a time-out's stack starts in libFuzzer's alarm handler, an OOM's in
        # the allocator's hooks).
        frames=$(grep -E '^ +#[0-9]+ ' "$a.replay" |
            grep -vE ' in (__sanitizer|__asan|__lsan|__ubsan|__interceptor_|fuzzer::|(malloc|calloc|realloc|free) )|/libc\.so' | head -3)
        if ! grep -qE 'ERROR: |runtime error|deadly signal|fuzz check failed' "$a.replay"; then
            gone=$((gone + 1)) # a time-out or OOM of a starved child, say: shown, not judged
            echo "    did not reproduce in-process: $a"
        elif grep -q 'libhdf5' <<<"$frames"; then
            contained=$((contained + 1))
        else
            ours=$((ours + 1))
            echo "    in the loader's child, not in libhdf5: $a (report: $a.replay)"
            grep -m1 -E 'ERROR: |runtime error' "$a.replay" | sed 's/^/      /'
        fi
    done
    if ((contained)); then
        echo "    contained: $contained inputs made libhdf5 fail a sanitizer check (or hang) in the loader"
        echo "    (kinds: $(cat "$dir"/artifacts/*.replay 2>/dev/null | grep -hoE 'ERROR: (AddressSanitizer: [A-Za-z-]+|LeakSanitizer: detected memory leaks|libFuzzer: (timeout|out-of-memory))' | sed 's/ERROR: //' | sort | uniq -c | sort -rn | tr -s ' ' | paste -sd, -))"
    fi
    ((gone)) && echo "    $gone inputs saved from the loader's child did not reproduce in-process"
    ((ours == 0))
}

status=0
printf '%-6s %8s %12s %8s %8s %8s  %s\n' harness seconds executions exec/s cov corpus result
for h in "${harnesses[@]}"; do
    bin=$build/tests/fuzz/fuzz_$h
    [[ -x $bin ]] || { echo "run.sh: $bin missing (build with -DSIGFLOW_FUZZ=ON)" >&2; exit 2; }
    dir=$out/$h
    rm -rf "$dir/seeds" "$dir/artifacts"
    mkdir -p "$dir/corpus" "$dir/seeds" "$dir/artifacts"
    seed "$h" "$dir/seeds"
    # In-process, libhdf5's leaks must be seen whole to meet their suppressions
    # (tests/lsan.supp). The loader program gets none of these options (its
    # environment is empty; src/model_guard.c sets its own).
    asan=$ASAN_OPTIONS
    save=
    [[ $h == model && ${FUZZ_MODEL_INPROCESS:-} != 1 ]] && save=$dir/artifacts
    if [[ $h == model && ${FUZZ_MODEL_INPROCESS:-} == 1 ]]; then
        asan=$asan:fast_unwind_on_malloc=0
    fi
    # shellcheck disable=SC2086 # SIGFLOW_FUZZ_FLAGS is a list of flags
    FUZZ_MODEL_SAVE_DIR=$save ASAN_OPTIONS=$asan "$bin" -max_total_time="$secs" -timeout="${timeout[$h]}" -rss_limit_mb=4096 \
        -max_len="${max_len[$h]}" -dict="$src/tests/fuzz/dict/$h.dict" \
        -artifact_prefix="$dir/artifacts/" -print_final_stats=1 ${SIGFLOW_FUZZ_FLAGS:-} \
        "$dir/corpus" "$dir/seeds" >"$dir/log" 2>&1
    rc=$?
    # In-process (-fork=1 -ignore_crashes=1), libFuzzer's exit status counts
    # libhdf5's crashes too: each is judged below by where it happened.
    [[ $h == model && ${FUZZ_MODEL_INPROCESS:-} == 1 ]] && rc=0
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    [[ $execs ]] || execs=$(grep -oE '^#[0-9]+' "$dir/log" | tail -1 | tr -d '#') # -fork's log
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1 | cut -d' ' -f2)
    corpus=$(find "$dir/corpus" -type f | wc -l)
    result=ok
    ((rc)) && result="FINDING (exit $rc)"
    printf '%-6s %8s %12s %8s %8s %8s  %s\n' "$h" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
        "$corpus" "$result"
    grep -m1 "^fuzz_$h outcomes" "$dir/log" | sed 's/^/    /'
    if [[ $h == model ]]; then
        classify_contained "$bin" "$dir" || { status=1; result="FINDING (in the loader's child)"; }
    fi
    if ((rc)); then
        status=1
        grep -E 'ERROR: |fuzz check failed|SUMMARY: |deadly signal|Test unit written' "$dir/log" | head -20 | sed 's/^/    /'
        for a in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$dir/log"); do
            echo "    reproduce: $bin $a"
            [[ $(stat -c %s "$a") -le 2048 ]] && echo "    base64: $(base64 -w0 "$a")"
        done
        echo "    full log: $dir/log"
    fi
done
exit $status
