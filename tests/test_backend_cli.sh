# test_backend_cli.sh: --backend/--precision on the command line, and never a
# silent generic kernel (issue 11).
#
# Debian's OpenBLAS 0.3.21 takes some AVX-512 CPUs (Sapphire Rapids) for a
# Prescott and runs generic SSE3 code. Forcing that case with
# OPENBLAS_CORETYPE=Prescott, the product must say so wherever it names its
# kernel, `auto` must not pick it, and the predictions must still be right.
# Without the variable, sigflow must run OpenBLAS's proper kernel on a CPU
# with AVX2 (it re-executes itself with OPENBLAS_CORETYPE set when OpenBLAS
# detected a generic core).
set -euo pipefail

SF="$SIGFLOW_BUILD_DIR/sigflow"
SRC="$SIGFLOW_SOURCE_DIR"
MODEL="$SRC/models/higgs_mlp.h5"
VARS="$SRC/models/higgs_variables.json"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
unset OPENBLAS_CORETYPE SIGFLOW_OPENBLAS_DETECTED

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

run() {
    set +e
    "$@"
    rc=$?
    set -e
}

has_flag() { grep -qw "$1" /proc/cpuinfo; }
avx2=0
if has_flag avx2 && has_flag fma; then avx2=1; fi
onednn=1
"$SF" inspect --model "$MODEL" --backend onednn >/dev/null 2>&1 || onednn=0
echo "CPU avx2+fma: $avx2, onednn JIT available: $onednn"

# 200 reference events as JSON, from the reference file's raw CSV values.
awk -F, '/^#/ { next }
    !n++ { for (i = 2; i <= 31; i++) h[i] = $i; next }
    n <= 201 {
        s = "{\"EventId\": " $1
        for (i = 2; i <= 31; i++) s = s ", \"" h[i] "\": " $i
        print s "}"
    }' "$SRC/models/higgs_reference.csv" >"$T/events.jsonl"
[ "$(wc -l <"$T/events.jsonl")" -eq 200 ] || fail "could not build 200 events from the reference"

inference_line() { # inspect's "inference" line, with extra arguments
    "$SF" inspect --model "$MODEL" "$@" | sed -n 's/^inference *//p'
}

# ---- the default: never the generic kernel on a CPU that has better ---------------
line=$(inference_line --backend openblas)
echo "openblas, no OPENBLAS_CORETYPE: $line"
case $line in *"backend openblas, precision fp32, kernel "*) ;; *) fail "inspect: $line" ;; esac
if [ $avx2 -eq 1 ]; then
    case $line in *Prescott,* | *WARNING*) fail "generic OpenBLAS kernel on an AVX2 CPU: $line" ;; esac
fi

# ---- forced generic: said everywhere, and auto does not take it -----------------
line=$(OPENBLAS_CORETYPE=Prescott inference_line --backend openblas)
echo "openblas, OPENBLAS_CORETYPE=Prescott: $line"
case $line in *"kernel Prescott"*) ;; *) fail "the user's OPENBLAS_CORETYPE was not kept: $line" ;; esac
if [ $avx2 -eq 1 ]; then
    case $line in *"WARNING: generic kernel"*) ;; *) fail "no warning for the generic kernel: $line" ;; esac
fi
line=$(OPENBLAS_CORETYPE=Prescott inference_line)
echo "auto, OPENBLAS_CORETYPE=Prescott: $line"
if [ $onednn -eq 1 ]; then
    case $line in *"backend onednn"*) ;; *) fail "auto picked the generic OpenBLAS kernel: $line" ;; esac
fi
OPENBLAS_CORETYPE=Prescott "$SF" inspect --model "$MODEL" --backend openblas --json >"$T/i.json"
grep -q '"generic": '"$([ $avx2 -eq 1 ] && echo true || echo false)" "$T/i.json" ||
    fail "inspect --json: generic flag"

# predict says it on stderr, and the generic kernel still computes the right numbers
OPENBLAS_CORETYPE=Prescott "$SF" predict --model "$MODEL" --variables "$VARS" --backend openblas \
    <"$T/events.jsonl" >"$T/prescott.out" 2>"$T/prescott.err"
grep -q "forward pass: backend openblas, precision fp32, kernel Prescott" "$T/prescott.err" ||
    fail "predict stderr: $(cat "$T/prescott.err")"
"$SF" predict --model "$MODEL" --variables "$VARS" --backend openblas \
    <"$T/events.jsonl" >"$T/openblas.out" 2>/dev/null
"$SF" predict --model "$MODEL" --variables "$VARS" <"$T/events.jsonl" >"$T/auto.out" 2>"$T/auto.err"
echo "predict default: $(cat "$T/auto.err")"
# p(signal) of the three runs against each other: within 1e-6.
probs() { sed 's/.*"probabilities": \[[^,]*, *\([^]]*\)\].*/\1/' "$1"; }
paste <(probs "$T/prescott.out") <(probs "$T/openblas.out") <(probs "$T/auto.out") |
    awk '{ for (i = 2; i <= 3; i++) { d = $1 - $i; if (d < 0) d = -d; if (d > 1e-6) bad++ } }
         END { if (NR != 200 || bad) { print "differ: " bad " of " NR; exit 1 } }' ||
    fail "Prescott, the proper OpenBLAS kernel and the default backend disagree"

# ---- bf16 ------------------------------------------------------------------------
if [ $onednn -eq 1 ]; then
    "$SF" predict --model "$MODEL" --variables "$VARS" --precision bf16 \
        <"$T/events.jsonl" >"$T/bf16.out" 2>"$T/bf16.err"
    echo "predict bf16: $(cat "$T/bf16.err")"
    grep -q "backend onednn, precision bf16" "$T/bf16.err" || fail "bf16 stderr: $(cat "$T/bf16.err")"
    if has_flag avx512_bf16 || has_flag amx_bf16; then
        ! grep -q EMULATED "$T/bf16.err" || fail "bf16 called emulated on a CPU with AVX512_BF16/AMX"
    else
        grep -q EMULATED "$T/bf16.err" || fail "emulated bf16 not announced"
    fi
    paste <(probs "$T/bf16.out") <(probs "$T/auto.out") |
        awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 0.02) bad++ } END { exit bad ? 1 : 0 }' ||
        fail "bf16 more than 0.02 from fp32"
fi

# ---- int8 (issue 24) ---------------------------------------------------------------
# On a VNNI/AMX kernel or not at all: never a silent emulation. The held-out
# accuracy bounds are test_model_quality's.
if [ $onednn -eq 1 ] && { has_flag avx512_vnni || has_flag amx_int8; }; then
    "$SF" predict --model "$MODEL" --variables "$VARS" --precision int8 \
        <"$T/events.jsonl" >"$T/int8.out" 2>"$T/int8.err"
    echo "predict int8: $(cat "$T/int8.err")"
    grep -qE "backend onednn, precision int8, kernel [^ ]*(vnni|amx)" "$T/int8.err" ||
        fail "int8 stderr: $(cat "$T/int8.err")"
    paste <(probs "$T/int8.out") <(probs "$T/auto.out") |
        awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 0.05) bad++ } END { exit bad ? 1 : 0 }' ||
        fail "int8 more than 0.05 from fp32"
    # oneDNN told to stop below VNNI has only an emulation to offer: refused
    run env ONEDNN_MAX_CPU_ISA=AVX512_CORE "$SF" predict --model "$MODEL" --variables "$VARS" \
        --precision int8 </dev/null >/dev/null 2>"$T/e"
    [ "$rc" -eq 2 ] && grep -q "not a VNNI or AMX kernel" "$T/e" ||
        fail "int8 without a VNNI kernel must be refused: exit $rc, $(cat "$T/e")"
    # a variables file without the calibration: refused, naming it
    sed 's/"calibration":/"calibration_removed":/' "$VARS" >"$T/nocal.json"
    run "$SF" predict --model "$MODEL" --variables "$T/nocal.json" --precision int8 \
        </dev/null >/dev/null 2>"$T/e"
    [ "$rc" -eq 2 ] && grep -q "training.calibration.dense_inputs" "$T/e" ||
        fail "int8 without calibration must be refused: exit $rc, $(cat "$T/e")"
elif [ $onednn -eq 1 ]; then
    run "$SF" predict --model "$MODEL" --variables "$VARS" --precision int8 </dev/null >/dev/null 2>"$T/e"
    [ "$rc" -eq 2 ] && grep -q "AVX512_VNNI or AMX-INT8" "$T/e" ||
        fail "int8 on a CPU without VNNI/AMX must be refused: exit $rc, $(cat "$T/e")"
    echo "SKIPPED int8 predictions: this CPU has neither AVX512_VNNI nor AMX-INT8 (refusal checked)"
fi

# ---- usage errors ------------------------------------------------------------------
for cmd in predict inspect run demo; do
    run "$SF" $cmd --backend mkl --model "$MODEL" --variables "$VARS" </dev/null >/dev/null 2>"$T/e"
    [ "$rc" -eq 2 ] && grep -q -- "--backend 'mkl'" "$T/e" || fail "$cmd --backend mkl: exit $rc, $(cat "$T/e")"
    run "$SF" $cmd --precision fp8 --model "$MODEL" --variables "$VARS" </dev/null >/dev/null 2>"$T/e"
    [ "$rc" -eq 2 ] && grep -q -- "--precision 'fp8'" "$T/e" || fail "$cmd --precision fp8: exit $rc"
done
run "$SF" predict --model "$MODEL" --variables "$VARS" --backend openblas --precision bf16 \
    </dev/null >/dev/null 2>"$T/e"
[ "$rc" -eq 2 ] && grep -q "fp32 only" "$T/e" || fail "openblas + bf16 must be refused: $(cat "$T/e")"
run "$SF" predict --model "$MODEL" --variables "$VARS" --backend openblas --precision int8 \
    </dev/null >/dev/null 2>"$T/e"
[ "$rc" -eq 2 ] && grep -q "int8 needs --backend onednn" "$T/e" ||
    fail "openblas + int8 must be refused: $(cat "$T/e")"
echo "test_backend_cli: ok"
