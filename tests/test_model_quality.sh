# test_model_quality.sh: the bundled Higgs model, run through `sigflow predict`,
# must keep the quality models/README.md promises on the held-out events.
#
# The held-out split (EventId % 10 == 9) was never trained on, so this measures
# the shipped model as users run it: CSV rows become JSON events, the CLI scores
# them, and accuracy and ROC AUC are computed here with awk (no Python at test
# time). A broken loader, normalization or -999 handling drops both figures far
# below the thresholds, which are the targets of issue #5.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(score ...) fails the test

src=${SIGFLOW_SOURCE_DIR:?}
bin=${SIGFLOW_BUILD_DIR:?}/sigflow
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

min_accuracy=0.82
min_auc=0.89

zcat "$src/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz" > "$tmp/events.csv"

# The JSON a producer would send for each held-out row, and its true label.
awk -F, 'NR == 1 { for (i = 1; i <= 31; i++) h[i] = $i; next }
    $1 % 10 == 9 {
        s = "{\"" h[1] "\": " $1
        for (i = 2; i <= 31; i++) s = s ", \"" h[i] "\": " $i
        print s "}"
    }' "$tmp/events.csv" > "$tmp/heldout.jsonl"
awk -F, 'NR > 1 && $1 % 10 == 9 { print $1, ($33 == "s") }' "$tmp/events.csv" > "$tmp/truth.txt"

n_events=$(wc -l < "$tmp/heldout.jsonl")
if [ "$n_events" -ne 2000 ]; then
    echo "FAIL: expected 2000 held-out events, built $n_events" >&2
    exit 1
fi

# score MODE...: predicts the held-out events with `sigflow predict MODE...`
# and prints "accuracy auc", checking the floors.
score() {
    "$bin" predict --model "$src/models/higgs_mlp.h5" \
        --variables "$src/models/higgs_variables.json" "$@" \
        < "$tmp/heldout.jsonl" > "$tmp/pred.jsonl" 2> "$tmp/pred.err"
# One "EventId p_signal label_index" line per prediction.
awk '{
        if (!match($0, /"EventId": *[0-9]+/)) { print "no EventId: " $0 > "/dev/stderr"; exit 1 }
        id = substr($0, RSTART, RLENGTH); sub(/.*: */, "", id)
        if (!match($0, /"label_index": *[0-9]+/)) { print "no label_index: " $0 > "/dev/stderr"; exit 1 }
        li = substr($0, RSTART, RLENGTH); sub(/.*: */, "", li)
        if (!match($0, /"probabilities": *\[[^]]*\]/)) { print "no probabilities: " $0 > "/dev/stderr"; exit 1 }
        p = substr($0, RSTART, RLENGTH); sub(/.*\[ */, "", p); sub(/ *\]/, "", p)
        split(p, q, / *, */)
        print id, q[2], li
    }' "$tmp/pred.jsonl" > "$tmp/scores.txt"

n_pred=$(wc -l < "$tmp/scores.txt")
if [ "$n_pred" -ne "$n_events" ]; then
    echo "FAIL: $n_events events in, $n_pred predictions out" >&2
    exit 1
fi

# Join on EventId, then accuracy and the Mann-Whitney AUC (ties count half).
awk 'NR == FNR { truth[$1] = $2; next }
     !($1 in truth) { print "unknown EventId " $1 > "/dev/stderr"; exit 1 }
     { print $2, truth[$1], ($3 == truth[$1]) }' "$tmp/truth.txt" "$tmp/scores.txt" \
    | sort -g -k1,1 \
    | awk -v min_acc="$min_accuracy" -v min_auc="$min_auc" '
        function flush_group(   k) {
            avg = (first + n) / 2          # ranks first..n, 1-based
            for (k = 0; k < gsize; k++) if (glab[k]) rank_sum += avg
            gsize = 0
        }
        {
            if (n > 0 && $1 != prev) flush_group()
            if (gsize == 0) first = n + 1
            n++; glab[gsize++] = $2; pos += $2; correct += $3; prev = $1
        }
        END {
            flush_group()
            neg = n - pos
            acc = correct / n
            auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
            printf "held-out events %d (signal %d): accuracy %.4f, ROC AUC %.4f\n", n, pos, acc, auc > "/dev/stderr"
            if (acc < min_acc) { printf "FAIL: accuracy %.4f < %s\n", acc, min_acc > "/dev/stderr"; exit 1 }
            if (auc < min_auc) { printf "FAIL: ROC AUC %.4f < %s\n", auc, min_auc > "/dev/stderr"; exit 1 }
            printf "%.6f %.6f\n", acc, auc
        }'
}


fp32=$(score --precision fp32)
echo "  ($(cat "$tmp/pred.err"))" >&2
cp "$tmp/scores.txt" "$tmp/scores.fp32"
bf16=$(score --backend onednn --precision bf16)
echo "  ($(cat "$tmp/pred.err"))" >&2
# auc_near PRECISION "acc auc": that AUC within 0.002 of fp32's.
auc_near() {
    awk -v a="$fp32" -v b="$2" -v p="$1" 'BEGIN {
        split(a, x, " "); split(b, y, " "); d = x[2] - y[2]; if (d < 0) d = -d
        printf "AUC fp32 %.5f, %s %.5f, |difference| %.5f (at most 0.002)\n", x[2], p, y[2], d
        if (d > 0.002) { print "FAIL: " p " AUC moved more than 0.002"; exit 1 }
    }'
}
# bf16 (issue 11): the held-out AUC within 0.002 of fp32's.
auc_near bf16 "$bf16"

# int8 (issue 24), statically calibrated on the training rows: the held-out
# AUC within 0.002 of fp32's and at least 99.5 % of the labels fp32's. It
# needs AVX512_VNNI or AMX-INT8 (refused elsewhere, and tested as refused).
if grep -qwE 'avx512_vnni|amx_int8' /proc/cpuinfo; then
    int8=$(score --backend onednn --precision int8)
    echo "  ($(cat "$tmp/pred.err"))" >&2
    auc_near int8 "$int8"
    awk 'NR == FNR { label[$1] = $3; next }
         { n++; same += ($1 in label) && label[$1] == $3 }
         END { printf "int8 labels equal to fp32 for %d of %d events (%.2f%%, at least 99.5%%)\n",
                      same, n, 100 * same / n
               if (n != 2000 || same < 0.995 * n) { print "FAIL: int8 labels differ"; exit 1 } }' \
        "$tmp/scores.fp32" "$tmp/scores.txt"
else
    echo "SKIPPED int8: this CPU has neither AVX512_VNNI nor AMX-INT8 (int8 is refused there)"
fi

# `sigflow evaluate` must report fp32's figures from the CSV itself.
awk -F, 'NR == 1 || $1 % 10 == 9' "$tmp/events.csv" > "$tmp/heldout.csv"
"$bin" evaluate --model "$src/models/higgs_mlp.h5" --variables "$src/models/higgs_variables.json" \
    --precision fp32 --csv "$tmp/heldout.csv" > "$tmp/evaluate.txt"
got=$(awk '/^accuracy/ { a = $2 } /^roc auc/ { u = $3 } END { print a, u }' "$tmp/evaluate.txt")
if [ "$got" != "$fp32" ] || ! grep -q "^events      2000 (rejected 0, unlabeled 0)" "$tmp/evaluate.txt"; then
    echo "FAIL: sigflow evaluate says '$got', awk '$fp32'" >&2
    cat "$tmp/evaluate.txt" >&2
    exit 1
fi

# The shipped ensemble (models/higgs_ensemble.json) keeps the same promise.
"$bin" evaluate --model "$src/models/higgs_ensemble.json" --csv "$tmp/heldout.csv" > "$tmp/ensemble.txt"
awk -v min_acc="$min_accuracy" -v min_auc="$min_auc" '
    /^accuracy/ { acc = $2 } /^roc auc/ { auc = $3 } /^events/ { n = $2 }
    END { printf "ensemble: held-out events %d: accuracy %.4f, ROC AUC %.4f\n", n, acc, auc
          if (n != 2000 || acc < min_acc || auc < min_auc) { print "FAIL: ensemble below target"; exit 1 } }' \
    "$tmp/ensemble.txt"
# ... and in int8, each member with its own calibration, within 0.002 of that AUC.
if grep -qwE 'avx512_vnni|amx_int8' /proc/cpuinfo; then
    "$bin" evaluate --model "$src/models/higgs_ensemble.json" --csv "$tmp/heldout.csv" \
        --precision int8 > "$tmp/ensemble8.txt"
    awk '/^roc auc/ { u[n++] = $3 } END {
            d = u[0] - u[1]; if (d < 0) d = -d
            printf "ensemble: AUC fp32 %.5f, int8 %.5f, |difference| %.5f (at most 0.002)\n", u[0], u[1], d
            if (n != 2 || d > 0.002) { print "FAIL: ensemble int8 AUC moved more than 0.002"; exit 1 } }' \
        "$tmp/ensemble.txt" "$tmp/ensemble8.txt"
fi
echo "PASS"
