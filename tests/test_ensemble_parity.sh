# test_ensemble_parity.sh: the shipped ensemble (models/higgs_ensemble.json)
# against the float64 reference of its members' saved weights
# (models/higgs_ensemble_reference.csv, written by train_higgs_ensemble.py
# --reference): every member's p(s) in `sigflow predict --emit-members` and
# the combined p(s) within 1e-5, on 200 held-out events.
set -euo pipefail

SF="$SIGFLOW_BUILD_DIR/sigflow"
SRC="$SIGFLOW_SOURCE_DIR"
REF="$SRC/models/higgs_ensemble_reference.csv"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# The header names the columns: EventId, 30 features, then p_s_<member>..., p_s_ensemble.
grep -v '^#' "$REF" >"$T/ref.csv"
awk -F, 'NR == 1 { for (i = 1; i <= 31; i++) h[i] = $i; next }
    { s = "{\"" h[1] "\": " $1
      for (i = 2; i <= 31; i++) s = s ", \"" h[i] "\": " $i
      print s "}" }' "$T/ref.csv" >"$T/events.jsonl"
"$SF" predict --model "$SRC/models/higgs_ensemble.json" --emit-members <"$T/events.jsonl" >"$T/out.jsonl"
[ "$(wc -l <"$T/out.jsonl")" -eq 200 ] || { echo "FAIL: expected 200 outputs" >&2; exit 1; }

# p(s) of each member and the ensemble, in the reference's column order.
awk -F, 'NR == 1 { for (i = 32; i <= NF; i++) { name[i - 31] = substr($i, 5) } n = NF - 31
                   for (k = 1; k <= n; k++) printf "%s%s", name[k], k < n ? " " : "\n"; exit }' \
    "$T/ref.csv" >"$T/names"
read -r -a names <"$T/names"
: >"$T/got"
while IFS= read -r line; do
    row=""
    for name in "${names[@]}"; do
        if [ "$name" = ensemble ]; then
            p=$(sed -n 's/.*"probabilities": \[[^,]*, \([^]]*\)\].*/\1/p' <<<"$line")
        else
            p=$(sed -n "s/.*\"$name\": \[[^,]*, \([^]]*\)\].*/\1/p" <<<"$line")
        fi
        row="$row $p"
    done
    echo "$row" >>"$T/got"
done <"$T/out.jsonl"
awk -F, 'NR > 1 { s = ""; for (i = 32; i <= NF; i++) s = s " " $i; print s }' "$T/ref.csv" |
    paste -d'|' - "$T/got" | awk -F'|' -v names="${names[*]}" '
    { n = split($1, want, " "); m = split($2, got, " ")
      if (n != m) { print "line " NR ": " m " values, expected " n; bad++; next }
      for (k = 1; k <= n; k++) { d = got[k] - want[k]; if (d < 0) d = -d; if (d > worst) worst = d
          if (d > 1e-5) { print "line " NR " column " k ": " got[k] " vs float64 " want[k]; bad++ } } }
    END { printf "ensemble parity: %d events, %s: max |sigflow - float64| %.3g\n", NR, names, worst
          exit bad > 0 }'
echo "PASS"
