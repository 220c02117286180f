# test_predict.sh: `sigflow predict` (and `sigflow inspect`) end to end on the
# committed fixture model. The expected probabilities come from the float64
# reference that make_fixtures.py wrote next to the model (model_mlp.ref.json),
# so this checks loader, normalization, inference and output together, without
# Python at test time: events are built and outputs compared with awk.
set -euo pipefail

SF="$SIGFLOW_BUILD_DIR/sigflow"
FIX="$SIGFLOW_SOURCE_DIR/tests/fixtures"
MODEL="$FIX/model_mlp.h5"
REF="$FIX/model_mlp.ref.json"
VARS="$FIX/vars_higgs.json"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Runs a command, recording its exit status in $rc without tripping set -e.
run() {
    set +e
    "$@"
    rc=$?
    set -e
}

# ---- inputs and expected outputs from the reference file ------------------------
sed -n 's/.*"name": "\([^"]*\)".*/\1/p' "$VARS" >"$T/names"
[ "$(wc -l <"$T/names")" -eq 30 ] || fail "expected 30 variable names in $VARS"
# offset and scale per variable, in order
sed -n 's/.*"offset": \([^,]*\), "scale": \([^,}]*\).*/\1 \2/p' "$VARS" >"$T/offset_scale"
[ "$(wc -l <"$T/offset_scale")" -eq 30 ] || fail "expected 30 offset/scale pairs"

section() { # the rows of one array of the reference file, one per line
    awk -v key="\"$1\": [" 'index($0, key) { on = 1; next }
        on && /^ *\]/ { exit }
        on { gsub(/[][,]/, " "); print }' "$REF"
}
section inputs >"$T/ref_inputs"
section outputs >"$T/ref_outputs"
[ "$(wc -l <"$T/ref_inputs")" -eq 5 ] || fail "expected 5 reference rows"

# events: EventId 100000+i and the variables with the given per-row values
make_events() { # $1: file of rows (30 numbers each)
    awk 'NR == FNR { name[FNR] = $1; next }
        { line = "{\"EventId\": " (100000 + FNR - 1)
          for (i = 1; i <= NF; i++) line = line ", \"" name[i] "\": " $i
          print line "}" }' "$T/names" "$1"
}

probs() { # the probabilities of each output line, space separated
    sed -n 's/.*"probabilities": \[\([^]]*\)\].*/\1/p' "$1" | tr -d ','
}

# every row of $1 within $3 of the same row of $2
close_to() {
    awk -v tol="$3" 'NR == FNR { a[FNR] = $0; next }
        { n = split(a[FNR], x, " "); m = split($0, y, " ")
          if (n != m || n == 0) { print "row " FNR ": width " n " vs " m; bad = 1; next }
          for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d
            if (d > tol) { print "row " FNR " col " i ": " x[i] " vs " y[i]; bad = 1 } } }
        END { if (FNR == 0) { print "no rows"; bad = 1 }; exit bad }' "$1" "$2"
}

# ---- --normalize none: the reference inputs go straight into the network --------
make_events "$T/ref_inputs" >"$T/none.jsonl"
run "$SF" predict --model "$MODEL" --variables "$VARS" --normalize none <"$T/none.jsonl" >"$T/none.out"
[ "$rc" -eq 0 ] || fail "predict --normalize none exited $rc"
[ "$(wc -l <"$T/none.out")" -eq 5 ] || fail "expected 5 output lines"
probs "$T/none.out" >"$T/none.probs"
close_to "$T/none.probs" "$T/ref_outputs" 1e-5 || fail "--normalize none differs from the reference"
head -1 "$T/none.out" | grep -q '^{"EventId": 100000, "label": "[bs]", "label_index": [01], "probabilities": \[' ||
    fail "unexpected output shape: $(head -1 "$T/none.out")"

# label and label_index agree with the argmax of the probabilities
awk '{ match($0, /"label": "[^"]*"/); lab = substr($0, RSTART + 10, RLENGTH - 11)
       match($0, /"label_index": [0-9]+/); idx = substr($0, RSTART + 15, RLENGTH - 15)
       match($0, /\[[^]]*\]/); split(substr($0, RSTART + 1, RLENGTH - 2), p, ", ")
       want = p[2] > p[1] ? 1 : 0
       if (idx != want || lab != (want ? "s" : "b")) { print "line " NR ": " $0; bad = 1 } }
     END { exit bad }' "$T/none.out" || fail "label does not match the argmax"

# ---- --normalize standard: events in raw units, (x + offset) * scale = input ------
awk 'NR == FNR { off[FNR] = $1; sc[FNR] = $2; next }
     { line = ""; for (i = 1; i <= NF; i++) line = line sprintf(" %.17g", $i / sc[i] - off[i]); print line }' \
    "$T/offset_scale" "$T/ref_inputs" >"$T/raw_rows"
make_events "$T/raw_rows" >"$T/raw.jsonl"
run "$SF" predict --model "$MODEL" --variables "$VARS" <"$T/raw.jsonl" >"$T/std.out"
[ "$rc" -eq 0 ] || fail "predict (standard) exited $rc"
probs "$T/std.out" >"$T/std.probs"
close_to "$T/std.probs" "$T/ref_outputs" 1e-5 || fail "--normalize standard differs from the reference"
# the default is standard
run "$SF" predict --model "$MODEL" --variables "$VARS" --normalize standard <"$T/raw.jsonl" >"$T/std2.out"
cmp -s "$T/std.out" "$T/std2.out" || fail "--normalize standard differs from the default"

# ---- --normalize l2: standard, then unit length; row 0 is all zeros and stays so --
awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i * $i; n = sqrt(s); line = ""
       for (i = 1; i <= NF; i++) line = line sprintf(" %.17g", n > 0 ? $i / n : 0); print line }' \
    "$T/ref_inputs" >"$T/unit_rows"
make_events "$T/unit_rows" >"$T/unit.jsonl"
run "$SF" predict --model "$MODEL" --variables "$VARS" --normalize l2 <"$T/raw.jsonl" >"$T/l2.out"
[ "$rc" -eq 0 ] || fail "predict --normalize l2 exited $rc"
run "$SF" predict --model "$MODEL" --variables "$VARS" --normalize none <"$T/unit.jsonl" >"$T/unit.out"
probs "$T/l2.out" >"$T/l2.probs"
probs "$T/unit.out" >"$T/unit.probs"
close_to "$T/l2.probs" "$T/unit.probs" 1e-5 || fail "--normalize l2 is not standard + unit length"
close_to "$T/l2.probs" "$T/std.probs" 1e-3 >/dev/null && fail "--normalize l2 gave the same as standard"
head -1 "$T/l2.probs" >"$T/l2_zero"
head -1 "$T/ref_outputs" >"$T/ref_zero"
close_to "$T/l2_zero" "$T/ref_zero" 1e-6 || fail "l2 of a zero row is not the zero row"

# ---- rejected lines keep their place; order is input order at any batch size -----
good() { # a valid raw event with the given id JSON
    sed -n 2p "$T/raw.jsonl" | sed "s/^{\"EventId\": [0-9]*/{\"EventId\": $1/"
}
{
    good 1
    echo 'not json'
    echo ''
    good '"s\\"q"'
    good 5 | sed 's/"PRI_met": [^,]*/"PRI_met": "12.5"/'
    echo '[1, 2]'
    good 7 | sed 's/"EventId": 7, //'
    good 8 | sed 's/"DER_mass_vis": [^,]*, //'
    good 9 | sed 's/"PRI_tau_pt": [^,]*/"PRI_tau_pt": 1e39/'
    good 10 | sed 's/"DER_mass_MMC": [^,]*/"DER_mass_MMC": -999/'
    good 11 | sed 's/"PRI_met": [^,]*/"PRI_met": -999.0/'
    good 12
} >"$T/mixed.jsonl"
for bs in 1 2 3 512; do
    run "$SF" predict --model "$MODEL" --variables "$VARS" --batch-size $bs <"$T/mixed.jsonl" >"$T/mixed.$bs"
    [ "$rc" -eq 1 ] || fail "batch size $bs: exit $rc with rejected lines, expected 1"
    [ "$(wc -l <"$T/mixed.$bs")" -eq 12 ] || fail "batch size $bs: expected 12 output lines"
    expect_line() { # $1 line number, $2 pattern
        sed -n "$1p" "$T/mixed.$bs" | grep -q -- "$2" ||
            fail "batch size $bs, line $1: '$(sed -n "$1p" "$T/mixed.$bs")' does not match '$2'"
    }
    expect_line 1 '^{"EventId": 1, "label"'
    expect_line 2 '^{"line": 2, "error": "invalid JSON at line 1, column [0-9]*'
    expect_line 3 '^{"line": 3, "error": "invalid JSON'
    expect_line 4 '^{"EventId": "s\\"q", "label"'
    expect_line 5 "^{\"line\": 5, \"error\": \"field 'PRI_met': expected a number, got string\"}$"
    expect_line 6 '^{"line": 6, "error": "expected a JSON object, got array"}$'
    expect_line 7 '^{"label": "[bs]", "label_index"'
    expect_line 8 "^{\"line\": 8, \"error\": \"field 'DER_mass_vis' is missing and has no default\"}$"
    expect_line 9 "^{\"line\": 9, \"error\": \"field 'PRI_tau_pt': value 1e39 is not a finite float\"}$"
    expect_line 10 '^{"EventId": 10, "label"'
    expect_line 11 "^{\"line\": 11, \"error\": \"field 'PRI_met' has the missing value -999 and no default\"}$"
    expect_line 12 '^{"EventId": 12, "label"'
done
for bs in 1 2 3; do
    probs "$T/mixed.$bs" >"$T/mixed.$bs.probs"
    probs "$T/mixed.512" >"$T/mixed.512.probs"
    close_to "$T/mixed.$bs.probs" "$T/mixed.512.probs" 1e-6 || fail "batch size $bs changes results"
done
# the same event gives the same prediction as before (line 1 = row 1 of raw.jsonl)
sed -n 1p "$T/mixed.512" | probs /dev/stdin >"$T/m1"
sed -n 2p "$T/std.out" | probs /dev/stdin >"$T/s1"
close_to "$T/m1" "$T/s1" 1e-6 || fail "an event's prediction depends on its neighbours"

# ---- ids: another field, none, and a long line --------------------------------
run "$SF" predict --model "$MODEL" --variables "$VARS" --id-field '' <"$T/raw.jsonl" >"$T/noid.out"
[ "$rc" -eq 0 ] && ! grep -q EventId "$T/noid.out" || fail "--id-field '' still copies EventId"
sed 's/"EventId"/"evt"/' "$T/raw.jsonl" >"$T/evt.jsonl"
run "$SF" predict --model "$MODEL" --variables "$VARS" --id-field evt <"$T/evt.jsonl" >"$T/evt.out"
head -1 "$T/evt.out" | grep -q '^{"evt": 100000, ' || fail "--id-field evt: $(head -1 "$T/evt.out")"
{
    printf '{"pad": "'
    head -c 3000000 /dev/zero | tr '\0' 'p'
    printf '", '
    sed -n 3p "$T/raw.jsonl" | cut -c2-
} >"$T/long.jsonl"
run "$SF" predict --model "$MODEL" --variables "$VARS" <"$T/long.jsonl" >"$T/long.out"
[ "$rc" -eq 0 ] && grep -q '^{"EventId": 100002, ' "$T/long.out" || fail "a 3 MB line was not predicted"
printf '' | "$SF" predict --model "$MODEL" --variables "$VARS" >"$T/empty.out" || fail "empty input should exit 0"
[ ! -s "$T/empty.out" ] || fail "empty input should print nothing"

if command -v jq >/dev/null; then # optional: every output line is valid JSON
    cat "$T/mixed.512" "$T/none.out" | jq -e . >/dev/null || fail "output is not valid JSON"
fi

# ---- usage and load errors: exit 2, one message, nothing on stdout ---------------
expect_usage_error() { # $1: stderr pattern, rest: arguments
    local pat="$1"
    shift
    run "$SF" predict "$@" </dev/null >"$T/u.out" 2>"$T/u.err"
    [ "$rc" -eq 2 ] || fail "predict $*: exit $rc, expected 2"
    [ ! -s "$T/u.out" ] || fail "predict $*: wrote to stdout"
    grep -q -- "$pat" "$T/u.err" || fail "predict $*: stderr lacks '$pat': $(cat "$T/u.err")"
}
expect_usage_error "required"
expect_usage_error "required" --model "$MODEL"
expect_usage_error "--normalize 'l3'" --model "$MODEL" --variables "$VARS" --normalize l3
expect_usage_error "--batch-size '0'" --model "$MODEL" --variables "$VARS" --batch-size 0
expect_usage_error "unexpected argument" --model "$MODEL" --variables "$VARS" extra
expect_usage_error "$T/missing.h5" --model "$T/missing.h5" --variables "$VARS"
expect_usage_error "bad_conv1d.h5" --model "$FIX/bad_conv1d.h5" --variables "$VARS"
expect_usage_error "3 input variables but model .* takes 30 inputs" --model "$MODEL" --variables "$FIX/vars_graph.json"
echo '{"inputs": [}' >"$T/bad_vars.json"
expect_usage_error "bad_vars.json: line 1" --model "$MODEL" --variables "$T/bad_vars.json"
[ "$(wc -l <"$T/u.err")" -eq 1 ] || fail "a load error should be one line on stderr"
"$SF" predict --help | grep -q -- "--normalize" || fail "predict --help"

# ---- inspect ------------------------------------------------------------------
sha=$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' "$REF")
run "$SF" inspect --model "$MODEL" --variables "$VARS" >"$T/inspect.txt"
[ "$rc" -eq 0 ] || fail "inspect exited $rc"
grep -q "^sha256 *$sha$" "$T/inspect.txt" || fail "inspect: sha256"
grep -q "^parameters *714$" "$T/inspect.txt" || fail "inspect: parameter count"
grep -q "^inputs *30$" "$T/inspect.txt" && grep -q "^outputs *2$" "$T/inspect.txt" || fail "inspect: widths"
grep -q "dense_2 *Dense *dense *8 -> 2 *softmax *18$" "$T/inspect.txt" || fail "inspect: last layer"
grep -q "batch_normalization *BatchNormalization *scale *16 -> 16" "$T/inspect.txt" || fail "inspect: BN"
grep -q "DER_mass_MMC *-121.467 *0.0177952 *121.467$" "$T/inspect.txt" || fail "inspect: variables"
grep -q "^missing value -999$" "$T/inspect.txt" || fail "inspect: missing value"
grep -q "0:b 1:s$" "$T/inspect.txt" || fail "inspect: labels"
grep -q "^training      none: drift compares inputs with the mean -offset" "$T/inspect.txt" ||
    fail "inspect: a file without a training block must say what drift falls back to"
run "$SF" inspect --model "$MODEL" --variables "$VARS" --json >"$T/inspect.json"
[ "$rc" -eq 0 ] || fail "inspect --json exited $rc"
grep -q "\"sha256\": \"$sha\"" "$T/inspect.json" && grep -q '"params": 714' "$T/inspect.json" ||
    fail "inspect --json: sha256 or params"
grep -q '"missing_value": -999' "$T/inspect.json" || fail "inspect --json: missing value"
if command -v jq >/dev/null; then
    [ "$(jq '.layers | length' "$T/inspect.json")" -eq 7 ] || fail "inspect --json: layers"
    [ "$(jq -r '.variables.labels[1]' "$T/inspect.json")" = s ] || fail "inspect --json: labels"
fi
wsha=$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' "$FIX/weights_mlp.ref.json")
"$SF" inspect --model "$FIX/weights_mlp.h5" --architecture "$FIX/arch_mlp.json" | grep -q "^sha256 *$wsha$" ||
    fail "inspect with --architecture: sha256"
run "$SF" inspect --model "$MODEL" --variables "$FIX/vars_graph.json" >/dev/null 2>"$T/i.err"
[ "$rc" -eq 2 ] && grep -q "takes 30 inputs" "$T/i.err" || fail "inspect with mismatched variables"
run "$SF" inspect >/dev/null 2>&1
[ "$rc" -eq 2 ] || fail "inspect without --model should exit 2"
# ---- a binary sigmoid head from a .keras archive, against Keras's own outputs -----
# k3_sigmoid.keras (Keras 3, Dense(1, sigmoid)); its reference holds model.predict's p.
KREF="$FIX/keras/k3_sigmoid.ref.json"
KMODEL="$FIX/keras/k3_sigmoid.keras"
# json.dump(indent=1): a row opens with "  [" and closes with "  ]" or "  ],"
krows() { # $1: inputs or outputs; one row per line
    awk -v key="\"$1\": [" 'index($0, key) { on = 1; next } on && /^ \]/ { exit }
        on && /^  \[$/ { row = ""; next } on && /^  \],?$/ { print row; next }
        on { gsub(/[ ,]/, ""); row = row " " $0 }' "$KREF"
}
krows inputs >"$T/k_inputs"
krows outputs | awk '{ printf "%.17g %s\n", 1 - $1, $1 }' >"$T/k_outputs"
[ "$(wc -l <"$T/k_inputs")" -eq 16 ] && [ "$(wc -l <"$T/k_outputs")" -eq 16 ] ||
    fail "expected 16 rows in $KREF"
make_events "$T/k_inputs" >"$T/k.jsonl"
run "$SF" predict --model "$KMODEL" --variables "$VARS" --normalize none <"$T/k.jsonl" >"$T/k.out"
[ "$rc" -eq 0 ] || fail "predict on a .keras sigmoid head exited $rc"
probs "$T/k.out" >"$T/k.probs"
close_to "$T/k.probs" "$T/k_outputs" 1e-5 || fail "sigmoid head: sigflow differs from Keras"
# label_index 1 exactly when p >= 0.5, with the second label
awk '{ match($0, /"label": "[^"]*"/); lab = substr($0, RSTART + 10, RLENGTH - 11)
       match($0, /"label_index": [0-9]+/); idx = substr($0, RSTART + 15, RLENGTH - 15)
       match($0, /\[[^]]*\]/); split(substr($0, RSTART + 1, RLENGTH - 2), p, ", ")
       want = p[2] >= 0.5 ? 1 : 0
       if (idx != want || lab != (want ? "s" : "b")) { print "line " NR ": " $0; bad = 1 }
       n[want]++ }
     END { if (!n[0] || !n[1]) { print "want both labels"; bad = 1 }; exit bad }' "$T/k.out" ||
    fail "sigmoid head: label does not follow p >= 0.5"
run "$SF" inspect --model "$KMODEL" --variables "$VARS" >"$T/k_inspect.txt"
[ "$rc" -eq 0 ] || fail "inspect on a .keras file exited $rc"
grep -q "^classifier *binary (sigmoid)" "$T/k_inspect.txt" || fail "inspect: binary (sigmoid)"
grep -q "Dense *dense *8 -> 1 *sigmoid *9$" "$T/k_inspect.txt" || fail "inspect: the sigmoid layer"
grep -q "^parameters *257$" "$T/k_inspect.txt" || fail "inspect: .keras parameter count"
"$SF" inspect --model "$KMODEL" --json | grep -q '"classifier": "binary (sigmoid)"' ||
    fail "inspect --json: classifier"
"$SF" inspect --model "$FIX/keras/k3_activations.keras" |
    grep -q "ReLU .* relu(max_value=6, threshold=0.3, negative_slope=0.05) *0$" ||
    fail "inspect: ReLU options"
# one output through another activation is not a classifier
expect_usage_error "one output .* not a sigmoid" --model "$FIX/keras/k3_linear1.keras" --variables "$VARS"
# a sigmoid head needs two labels
printf '{"inputs": [%s], "class_labels": ["s"]}\n' \
    "$(sed 's/.*/{"name": "&", "offset": 0, "scale": 1}/' "$T/names" | paste -sd, -)" >"$T/one_label.json"
expect_usage_error "1 labels (s) but model .* has 2 outputs (a binary sigmoid head" \
    --model "$KMODEL" --variables "$T/one_label.json"
# a .keras refusal names the file and the member
expect_usage_error "bad_no_model.keras: member 'model.weights.h5' is missing" \
    --model "$FIX/keras/bad_no_model.keras" --variables "$VARS"

# What goes in is what gets scored: the shipped variables require all 30
# inputs, so an event without them is refused (predict, evaluate and the
# daemon share the engine's rule), naming the inputs; -999 is filled.
SHIP=(--model "$SIGFLOW_SOURCE_DIR/models/higgs_mlp.h5" --variables "$SIGFLOW_SOURCE_DIR/models/higgs_variables.json")
printf '{}\n{"foo":"bar"}\n' >"$T/junk.jsonl"
run "$SF" predict "${SHIP[@]}" <"$T/junk.jsonl" >"$T/junk.out" 2>/dev/null
[ "$rc" -eq 1 ] || fail "predict of {} and {\"foo\":\"bar\"} exited $rc, not 1"
[ "$(grep -c '"error": "30 required fields .DER_mass_MMC., .DER_mass_transverse_met_lep.' "$T/junk.out")" -eq 2 ] ||
    fail "{} and {\"foo\":\"bar\"} must be refused naming the inputs: $(cat "$T/junk.out")"
printf '{"Label": "s"}\n' >"$T/junk1.jsonl"
run "$SF" evaluate "${SHIP[@]}" --label-field Label <"$T/junk1.jsonl" >"$T/junk_eval.out" 2>&1
[ "$rc" -ne 0 ] || fail "evaluate scored an event without its inputs"
grep -q "stdin:1: 30 required fields 'DER_mass_MMC'" "$T/junk_eval.out" ||
    fail "evaluate must name the missing inputs: $(cat "$T/junk_eval.out")"

# ---- ONNX (issue 27): the shipped model converted by tf2onnx predicts what the .h5
# does, and --onnx-output chooses the graph output or says why it cannot ------------
HM="$SIGFLOW_SOURCE_DIR/models/higgs_mlp"
HV="$SIGFLOW_SOURCE_DIR/models/higgs_variables.json"
run "$SF" predict --model "$HM.h5" --variables "$HV" <"$T/raw.jsonl" >"$T/h5.out"
[ "$rc" -eq 0 ] || fail "predict higgs_mlp.h5 exited $rc"
run "$SF" predict --model "$HM.onnx" --variables "$HV" <"$T/raw.jsonl" >"$T/onnx.out"
[ "$rc" -eq 0 ] || fail "predict higgs_mlp.onnx exited $rc"
probs "$T/h5.out" >"$T/h5.probs"
probs "$T/onnx.out" >"$T/onnx.probs"
close_to "$T/onnx.probs" "$T/h5.probs" 1e-6 || fail "higgs_mlp.onnx differs from higgs_mlp.h5"
run "$SF" predict --model "$HM.onnx" --onnx-output dense_3 --variables "$HV" <"$T/raw.jsonl" \
    >"$T/onnx2.out"
cmp -s "$T/onnx.out" "$T/onnx2.out" || fail "--onnx-output dense_3 is not the default output"
run "$SF" predict --model "$HM.onnx" --onnx-output nope --variables "$HV" <"$T/raw.jsonl" \
    >"$T/out" 2>"$T/err"
[ "$rc" -eq 2 ] && grep -qF "higgs_mlp.onnx: the graph has no output named 'nope'" "$T/err" ||
    fail "--onnx-output nope: exit $rc, $(cat "$T/err")"
run "$SF" predict --model "$HM.h5" --onnx-output dense_3 --variables "$HV" <"$T/raw.jsonl" \
    >"$T/out" 2>"$T/err"
[ "$rc" -eq 2 ] && grep -qF "higgs_mlp.h5: --onnx-output dense_3: not an ONNX model" "$T/err" ||
    fail "--onnx-output with an HDF5 model: exit $rc, $(cat "$T/err")"

# A model set may mix formats: the .h5 and the .onnx of one network give it back.
run "$SF" predict --model "$FIX/onnx/set_mixed.json" <"$T/raw.jsonl" >"$T/set.out"
[ "$rc" -eq 0 ] || fail "predict with a mixed set exited $rc"
probs "$T/set.out" >"$T/set.probs"
close_to "$T/set.probs" "$T/h5.probs" 1e-6 || fail "the mixed set differs from its members"

# `sigflow demo --model models/higgs_mlp.onnx` serves it end to end (embedded broker; ~4 s).
run "$SF" demo --model "$HM.onnx" --limit 50 >"$T/demo.out" 2>"$T/demo.err"
[ "$rc" -eq 0 ] && grep -qE '^predicted: +50$' "$T/demo.out" &&
    grep -qE '^dead letters: +0 ' "$T/demo.out" ||
    fail "demo --model higgs_mlp.onnx: exit $rc, $(cat "$T/demo.out" "$T/demo.err")"

# The shipped variables carry the training block (models/training_stats.py).
run "$SF" inspect "${SHIP[@]}" >"$T/ship.txt"
[ "$rc" -eq 0 ] || fail "inspect of the shipped model exited $rc"
grep -q "^training      18000 rows$" "$T/ship.txt" &&
    grep -q "^ *0  DER_mass_MMC *121.56 *56.4271 *0.1529 *20  64 75.54 " "$T/ship.txt" &&
    grep -q "^score         p(s) on 2000 events, signal rate 0.3085, 20 bins: 0.006713 " "$T/ship.txt" ||
    fail "inspect: the training block: $(grep -A3 '^training' "$T/ship.txt")"
run "$SF" inspect "${SHIP[@]}" --json >"$T/ship.json"
grep -q '"training": {' "$T/ship.json" && grep -q '"signal_rate": 0.3085' "$T/ship.json" ||
    fail "inspect --json: the training block"

echo "test_predict: ok"
