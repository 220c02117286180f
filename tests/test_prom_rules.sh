# test_prom_rules.sh: contrib/prometheus/sigflow-rules.yml passes
# `promtool check rules` (Debian package prometheus; skipped with one line
# when it is not installed). That its expressions query series /metrics
# serves is checked by test_dashboard, with or without promtool.
set -u
RULES=$SIGFLOW_SOURCE_DIR/contrib/prometheus/sigflow-rules.yml
[ -s "$RULES" ] || { echo "FAIL: $RULES missing" >&2; exit 1; }
if ! command -v promtool >/dev/null; then
    echo "test_prom_rules: promtool not installed (Debian package prometheus): rules not checked"
    exit 0
fi
out=$(promtool check rules "$RULES" 2>&1) || { echo "FAIL: promtool check rules: $out" >&2; exit 1; }
echo "$out" | grep -q "SUCCESS: 6 rules found" || { echo "FAIL: $out" >&2; exit 1; }
echo "test_prom_rules: $(promtool --version 2>&1 | head -1): $out" | tr '\n' ' '
echo
