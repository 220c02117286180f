# test_ensemble.sh: a model set through `sigflow predict`, `inspect` and
# `evaluate`, against its members run alone.
#
# The set fixture (tests/fixtures/set_pair.json) has two members with
# different networks, variables files (another order, other offsets, one
# default fewer) and weights 0.75/0.25. On real events, each ensemble output
# must be the weighted mean of the members' own `sigflow predict` outputs
# within 1e-6, its "members" the members' outputs exactly, and an event one
# member refuses must be refused naming that member.
set -euo pipefail

SF="$SIGFLOW_BUILD_DIR/sigflow"
FIX="$SIGFLOW_SOURCE_DIR/tests/fixtures"
SRC="$SIGFLOW_SOURCE_DIR"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

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

# 2,000 real events (the first rows of the bundled sample), as a producer sends them.
zcat "$SRC/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz" |
    awk -F, 'NR == 1 { for (i = 1; i <= 31; i++) h[i] = $i; next }
        NR <= 2001 { s = "{\"" h[1] "\": " $1
                     for (i = 2; i <= 31; i++) s = s ", \"" h[i] "\": " $i
                     print s "}" }' >"$T/events.jsonl"
[ "$(wc -l <"$T/events.jsonl")" -eq 2000 ] || fail "expected 2000 events"

# The set against its members alone, on every backend and precision (the
# members run on the engine's): compare FLAGS... < events
compare() {
    local events=$1
    shift
    local flags=("$@")
    run "$SF" predict "${flags[@]}" --model "$FIX/model_mlp.h5" --variables "$FIX/vars_higgs.json" \
        <"$events" >"$T/mlp.jsonl"
    run "$SF" predict "${flags[@]}" --model "$SRC/models/higgs_mlp.h5" --variables "$FIX/vars_higgs_perm.json" \
        <"$events" >"$T/higgs.jsonl"
    run "$SF" predict "${flags[@]}" --model "$FIX/set_pair.json" --emit-members <"$events" >"$T/set.jsonl"
    [ "$rc" -eq 1 ] || fail "set predict: exit $rc, expected 1 (some events refused by 'higgs')"

    probs() { sed -n 's/.*"probabilities": \[\([^]]*\)\].*/\1/p' | tr -d ','; }
    # One line per event: "ok p0 p1" or "err <message>"
    shape() {
        awk '/"error"/ { print "err " $0; next }
             { match($0, /"probabilities": \[[^]]*\]/); s = substr($0, RSTART + 18, RLENGTH - 19)
               gsub(/,/, "", s); print "ok " s }' "$1"
    }
    shape "$T/mlp.jsonl" >"$T/a"
    shape "$T/higgs.jsonl" >"$T/b"
    shape "$T/set.jsonl" >"$T/s"
    [ "$(wc -l <"$T/s")" -eq "$(wc -l <"$events")" ] || fail "expected one set output per event"
    paste -d '|' "$T/a" "$T/b" "$T/s" "$T/set.jsonl" | awk -F'|' -v flags="${flags[*]:-default}" -v n="$(wc -l <"$events")" '
        { split($1, a, " "); split($2, b, " "); split($3, s, " ") }
        a[1] == "err" || b[1] == "err" {
            refused++
            who = a[1] == "err" ? "mlp" : "higgs"
            if (s[1] != "err" || index($3, "member '\''" who "'\''") == 0) {
                print "line " NR ": refused by " who " alone, set said: " $3; bad++ }
            next }
        {
            if (s[1] != "ok") { print "line " NR ": set refused an event both members took: " $3; bad++; next }
            for (k = 2; k <= 3; k++) {
                want = 0.75 * a[k] + 0.25 * b[k]; d = s[k] - want; if (d < 0) d = -d
                if (d > 1e-6) { print "line " NR ": p" k - 2 " " s[k] " != weighted mean " want; bad++ }
                if (d > worst) worst = d
            }
            m = "\"members\": {\"mlp\": [" a[2] ", " a[3] "], \"higgs\": [" b[2] ", " b[3] "]}"
            if (index($4, m) == 0) { print "line " NR ": members differ from the members alone: " $4; bad++ }
            ok++
        }
        END { printf "ensemble %s: %d events compared (max |set - weighted mean| %.3g), %d refused\n", flags, ok, worst, refused
              if (ok < n / 2 || refused < n / 200) { print "too few events of a kind"; bad++ }
              exit bad > 0 }' || fail "ensemble outputs (${flags[*]:-default})"

}
compare "$T/events.jsonl"
head -400 "$T/events.jsonl" >"$T/few.jsonl"
compare "$T/few.jsonl" --backend openblas
compare "$T/few.jsonl" --backend onednn --precision bf16

# Refusals name the member and the reason.
run "$SF" predict --model "$FIX/set_labels.json" <"$T/events.jsonl" >/dev/null 2>"$T/err"
[ "$rc" -eq 2 ] && grep -q "member 'three': labels \[ztautau,higgs,ttbar\] differ from member 'mlp' \[b,s\]" "$T/err" ||
    fail "different labels: exit $rc, $(cat "$T/err")"
run "$SF" predict --model "$FIX/set_missing.json" <"$T/events.jsonl" >/dev/null 2>"$T/err"
[ "$rc" -eq 2 ] && grep -q "member 'gone': .*no_such_model.h5" "$T/err" ||
    fail "missing member: exit $rc, $(cat "$T/err")"
for opt in --variables --architecture; do
    run "$SF" predict --model "$FIX/set_pair.json" $opt "$FIX/vars_higgs.json" </dev/null >/dev/null 2>"$T/err"
    [ "$rc" -eq 2 ] && grep -q "is a model set: its members name their own" "$T/err" ||
        fail "$opt with a set: exit $rc, $(cat "$T/err")"
done
# A bad value of a variable names the first member reading it; an event-level
# problem names none.
printf '%s\n' '{"EventId": 1, "DER_mass_MMC": "heavy"}' 'not json' |
    "$SF" predict --model "$FIX/set_pair.json" >"$T/bad.jsonl" || true
grep -q "\"line\": 1, \"error\": \"member 'mlp': field 'DER_mass_MMC': expected a number, got string\"" "$T/bad.jsonl" &&
    grep "\"line\": 2" "$T/bad.jsonl" | grep -qv "member" || fail "bad values: $(cat "$T/bad.jsonl")"
printf '{"name": "x", "members": [{"name": "a", "model": "m.h5", "variables": "v.json", "weight": 0}]}\n' >"$T/zero.json"
run "$SF" predict --model "$T/zero.json" </dev/null >/dev/null 2>"$T/err"
[ "$rc" -eq 2 ] && grep -q "member 'a': \"weight\" must be a positive number" "$T/err" ||
    fail "zero weight: exit $rc, $(cat "$T/err")"

# ---- inspect: members, normalized weights, inputs, labels -----------------------
"$SF" inspect --model "$FIX/set_pair.json" >"$T/inspect.txt"
grep -q "^members       2$" "$T/inspect.txt" && grep -q "^labels        0:b 1:s$" "$T/inspect.txt" &&
    grep -Eq "^  0  mlp +0.750000 +0.75 +30 +714 " "$T/inspect.txt" &&
    grep -Eq "^  1  higgs +0.250000 +0.25 +30 +1018002 " "$T/inspect.txt" &&
    grep -q "^==== member higgs (weight 0.250000)" "$T/inspect.txt" ||
    fail "inspect of a set: $(cat "$T/inspect.txt")"
"$SF" inspect --model "$FIX/set_pair.json" --json | grep -q '"weight": 0.25' || fail "inspect --json of a set"

# ---- evaluate: the label as a name, an index, or a CSV column agree -------------
zcat "$SRC/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz" | awk 'NR <= 1001' >"$T/sample.csv"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next }
    { s = "{\"" h[1] "\": " $1
      for (i = 2; i <= 31; i++) s = s ", \"" h[i] "\": " $i
      print s ", \"Truth\": \"" $33 "\", \"Index\": " ($33 == "s") "}" }' "$T/sample.csv" >"$T/labeled.jsonl"
M=(--model "$SRC/models/higgs_mlp.h5" --variables "$SRC/models/higgs_variables.json")
"$SF" evaluate "${M[@]}" --label-field Truth <"$T/labeled.jsonl" >"$T/ev_name"
"$SF" evaluate "${M[@]}" --label-field Index <"$T/labeled.jsonl" >"$T/ev_index"
"$SF" evaluate "${M[@]}" --csv "$T/sample.csv" >"$T/ev_csv"
cmp -s "$T/ev_name" "$T/ev_index" && cmp -s "$T/ev_name" "$T/ev_csv" ||
    fail "evaluate differs by label source: $(cat "$T/ev_name" "$T/ev_index" "$T/ev_csv")"
grep -q "^events      1000 (rejected 0, unlabeled 0)" "$T/ev_name" || fail "evaluate: $(cat "$T/ev_name")"
# Its accuracy is the share of `predict` labels equal to the truth.
"$SF" predict "${M[@]}" <"$T/labeled.jsonl" | sed -n 's/.*"label": "\([^"]*\)".*/\1/p' >"$T/pred_labels"
want=$(awk -F, 'NR > 1 { print $33 }' "$T/sample.csv" | paste -d' ' - "$T/pred_labels" |
    awk '{ ok += $1 == $2 } END { printf "%.6f", ok / NR }')
grep -q "^accuracy    $want$" "$T/ev_name" || fail "evaluate accuracy, want $want: $(cat "$T/ev_name")"
# A set of the same network twice: every figure is the network's, per member too.
printf '{"name": "twice", "members": [
 {"name": "one", "model": "%s", "variables": "%s", "weight": 1},
 {"name": "two", "model": "%s", "variables": "%s", "weight": 3}]}\n' \
    "$SRC/models/higgs_mlp.h5" "$SRC/models/higgs_variables.json" \
    "$SRC/models/higgs_mlp.h5" "$SRC/models/higgs_variables.json" >"$T/twice.json"
"$SF" evaluate --model "$T/twice.json" --label-field Truth <"$T/labeled.jsonl" >"$T/ev_set"
acc=$(awk '/^accuracy/ { print $2 }' "$T/ev_name")
auc=$(awk '/^roc auc/ { print $3 }' "$T/ev_name")
head -7 "$T/ev_set" | cmp -s - "$T/ev_name" &&
    grep -q "^  one              weight 0.250000  accuracy $acc  roc auc $auc$" "$T/ev_set" &&
    grep -q "^  two              weight 0.750000  accuracy $acc  roc auc $auc$" "$T/ev_set" ||
    fail "evaluate of a set: $(cat "$T/ev_set")"
# One label only: accuracy, but no AUC rather than a made-up one.
grep '"Truth": "b"' "$T/labeled.jsonl" | "$SF" evaluate "${M[@]}" --label-field Truth >"$T/ev_one"
grep -q "^roc auc     n/a (needs events of both labels) (positive label s)$" "$T/ev_one" ||
    fail "evaluate of one label, text: $(cat "$T/ev_one")"
grep '"Truth": "b"' "$T/labeled.jsonl" | "$SF" evaluate "${M[@]}" --label-field Truth --json |
    python3 -c 'import json, sys; o = json.load(sys.stdin); assert o["auc"] is None and o["events"] > 0, o' ||
    fail "evaluate of one label, JSON"
run "$SF" evaluate "${M[@]}" --label-field Nope <"$T/labeled.jsonl" >/dev/null 2>"$T/err"
[ "$rc" -eq 1 ] && grep -q "no event could be evaluated (0 rejected, 1000 without a usable 'Nope')" "$T/err" ||
    fail "evaluate without labels: exit $rc, $(cat "$T/err")"
echo "PASS"
