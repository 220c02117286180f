# test_manpages.sh: --help and the man pages (doc/*.1) agree both ways: every
# option and short flag a command's --help lists is documented in its man page
# (in the subcommand's own section for sigflow), and every option the page
# documents is in --help. Options are read from the binaries, so adding an
# option without documenting it fails here. The METRICS section lists exactly
# the families /metrics serves (scraped from a run waiting for a broker that
# is not there). The pages must also render without groff warnings.
set -u
SRC=$SIGFLOW_SOURCE_DIR
BUILD=$SIGFLOW_BUILD_DIR
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

# The options of a --help text: --long and -s tokens that begin a word.
help_options() {
    grep -oE '(^|[][ ,|(])--?[A-Za-z][A-Za-z0-9-]*' | sed -E 's/^[][ ,|(]//' | sort -u
}

# A man page (or part of it) as plain text: fonts and escaped dashes undone.
plain() { sed -E 's/\\f[BIRP]//g; s/\\f\[[A-Z]*\]//g; s/\\-/-/g; s/\\\(em/--/g'; }

# Lines of PAGE from ".SS sigflow CMD" to the next section or subsection.
section() {
    awk -v h=".SS sigflow $2" '$0 == h {on = 1; next} on && /^\.S[SH] / {exit} on' "$1"
}

# The options a man page (part) documents: the first line of each .TP item.
man_options() {
    awk '/^\.TP/ {getline; print}' | plain | grep -oE '(^|[ ,"])--?[A-Za-z][A-Za-z0-9-]*' |
        sed -E 's/^[ ,"]//' | sort -u
}

check() { # name, help text file, documentation text file[, raw man part]
    local name=$1 help=$2 doc=$3 raw=${4:-} n=0
    [ -s "$help" ] || { fail "$name: empty --help"; return; }
    [ -s "$doc" ] || { fail "$name: no documentation section"; return; }
    while read -r opt; do
        n=$((n + 1))
        grep -qE -- "(^|[^A-Za-z0-9-])${opt}([^A-Za-z0-9-]|\$)" "$doc" ||
            fail "$name: option $opt is in --help but not in its man page"
    done < <(help_options <"$help")
    [ $n -gt 0 ] || fail "$name: no option found in --help"
    if [ -n "$raw" ]; then
        while read -r opt; do
            grep -qE -- "(^|[^A-Za-z0-9-])${opt}([^A-Za-z0-9-]|\$)" "$help" ||
                fail "$name: option $opt is in its man page but not in --help"
        done < <(man_options <"$raw")
    fi
    echo "$name: $n options checked"
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_man.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
for cmd in run demo predict inspect evaluate broker; do
    "$BUILD/sigflow" "$cmd" --help >"$TMP/help" || fail "sigflow $cmd --help failed"
    section "$SRC/doc/sigflow.1" "$cmd" >"$TMP/raw"
    plain <"$TMP/raw" >"$TMP/doc"
    check "sigflow $cmd" "$TMP/help" "$TMP/doc" "$TMP/raw"
done
for prog in sigflow-replay sigflow-bench; do
    "$BUILD/$prog" --help >"$TMP/help" || fail "$prog --help failed"
    plain <"$SRC/doc/$prog.1" >"$TMP/doc"
    check "$prog" "$TMP/help" "$TMP/doc" "$SRC/doc/$prog.1"
done
"$BUILD/sigflow" --help >"$TMP/help" || fail "sigflow --help failed"
awk '/^\.SH SYNOPSIS/ {on = 1; next} on && /^\.SH / {exit} on' "$SRC/doc/sigflow.1" | plain >"$TMP/doc"
check "sigflow" "$TMP/help" "$TMP/doc"

# METRICS lists what /metrics serves, no more, no less.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$BUILD/sigflow" run -b "127.0.0.1:$port" --model "$SRC/models/higgs_mlp.h5" \
    --variables "$SRC/models/higgs_variables.json" --metrics-addr 127.0.0.1:0 \
    --connect-timeout-ms 60000 2>"$TMP/run.err" &
run=$!
timeout 60 bash -c "until grep -q 'metrics on' '$TMP/run.err'; do sleep 0.05; done"
mport=$(sed -n 's/.*metrics on .*port=\([0-9]*\).*/\1/p' "$TMP/run.err" | head -n1)
python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://127.0.0.1:$mport/metrics" | awk '/^# TYPE / {print $3}' | sort >"$TMP/served"
kill -TERM $run; wait $run
[ -s "$TMP/served" ] || fail "no families scraped: $(cat "$TMP/run.err")"
awk '/^\.SH METRICS/ {on = 1; next} on && /^\.SH / {exit} on && prev ~ /^\.TP/ {print $2} {prev = $0}' \
    "$SRC/doc/sigflow.1" | plain | sort >"$TMP/documented"
diff "$TMP/served" "$TMP/documented" >"$TMP/diff" ||
    fail "METRICS in sigflow.1 is not what /metrics serves (< served, > documented): $(cat "$TMP/diff")"
echo "metrics: $(wc -l <"$TMP/served") families checked"

# Every option of run has its SIGFLOW_ variable listed under ENVIRONMENT.
awk '/^\.SH ENVIRONMENT/ {on = 1; next} on && /^\.SH / {exit} on' "$SRC/doc/sigflow.1" | plain >"$TMP/env"
for opt in $("$BUILD/sigflow" run --help | help_options | grep '^--'); do
    case $opt in --help | --print-config) continue ;; esac
    var=SIGFLOW_$(echo "${opt#--}" | tr 'a-z-' 'A-Z_')
    grep -qw "$var" "$TMP/env" || fail "sigflow run $opt: $var is not under ENVIRONMENT in sigflow.1"
done

# Every subcommand of `sigflow --help` has its section.
for cmd in $("$BUILD/sigflow" --help | awk '/^commands:/ {on = 1; next} on && NF {print $1}'); do
    grep -qx ".SS sigflow $cmd" "$SRC/doc/sigflow.1" || fail "sigflow $cmd has no section in sigflow.1"
done

if command -v groff >/dev/null; then
    for page in "$SRC"/doc/*.1; do
        warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
        [ -z "$warnings" ] || fail "$(basename "$page") renders with warnings: $warnings"
    done
else
    echo "groff not installed: rendering not checked"
fi
exit $failed
