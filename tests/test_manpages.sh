# test_manpages.sh: every option a command's --help lists is documented in its
# man page (doc/*.1), in the subcommand's own section for sigflow. Options are
# read from the binaries, so adding an option without documenting it fails here.
# The pages must also render without groff warnings.
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

check() { # name, help text file, documentation text file
    local name=$1 help=$2 doc=$3 n=0
    [ -s "$help" ] || { fail "$name: empty --help"; return; }
    [ -s "$doc" ] || { fail "$name: no documentation section"; return; }
    while read -r opt; do
        n=$((n + 1))
        grep -qE -- "(^|[^A-Za-z0-9-])${opt}([^A-Za-z0-9-]|\$)" "$doc" ||
            fail "$name: option $opt is in --help but not in its man page"
    done < <(help_options <"$help")
    [ $n -gt 0 ] || fail "$name: no option found in --help"
    echo "$name: $n options checked"
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_man.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
for cmd in run demo predict inspect broker; do
    "$BUILD/sigflow" "$cmd" --help >"$TMP/help" || fail "sigflow $cmd --help failed"
    section "$SRC/doc/sigflow.1" "$cmd" | plain >"$TMP/doc"
    check "sigflow $cmd" "$TMP/help" "$TMP/doc"
done
for prog in sigflow-replay sigflow-bench; do
    "$BUILD/$prog" --help >"$TMP/help" || fail "$prog --help failed"
    plain <"$SRC/doc/$prog.1" >"$TMP/doc"
    check "$prog" "$TMP/help" "$TMP/doc"
done

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
