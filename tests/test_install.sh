# test_install.sh: `cmake --install` into a temporary prefix puts every file
# where an operator expects it, and the installed binaries are relocatable:
# after moving the prefix, `sigflow demo` and `sigflow-bench`, run from another
# directory, find the installed model and sample (never the source tree's).
set -u
SRC=$SIGFLOW_SOURCE_DIR
BUILD=$SIGFLOW_BUILD_DIR
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; for f in "$TMP"/out "$TMP"/err; do [ -s "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" >&2; done; exit 1; }

cmake --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/out" 2>"$TMP/err" || fail "cmake --install"
for f in bin/sigflow bin/sigflow-replay bin/sigflow-bench \
         share/man/man1/sigflow.1.gz share/man/man1/sigflow-replay.1.gz share/man/man1/sigflow-bench.1.gz \
         share/doc/sigflow/copyright share/doc/sigflow/changelog.gz etc/sigflow/common.env \
         share/sigflow/higgs_mlp.h5 share/sigflow/higgs_variables.json \
         share/sigflow/atlas-higgs-challenge-2014-v2-sample.csv.gz share/sigflow/corrupt_segv_2130_10.h5.gz \
         share/sigflow/sandbox_external_link.h5 libexec/sigflow/sigflow-loader \
         share/sigflow/grafana/sigflow.json lib/systemd/system/sigflow@.service; do
    [ -f "$TMP/prefix/$f" ] && [ ! -L "$TMP/prefix/$f" ] || fail "$f not installed as a file"
done
for f in bin/sigflow bin/sigflow-replay bin/sigflow-bench libexec/sigflow/sigflow-loader; do
    [ -x "$TMP/prefix/$f" ] || fail "$f not executable"
done
cmp -s "$SRC/models/higgs_mlp.h5" "$TMP/prefix/share/sigflow/higgs_mlp.h5" || fail "installed model differs"
unit=$TMP/prefix/lib/systemd/system/sigflow@.service
grep -qx "ExecStart=$TMP/prefix/bin/sigflow run" "$unit" || fail "unit ExecStart: $(grep ExecStart "$unit")"
grep -q "SIGFLOW_MODEL=$TMP/prefix/share/sigflow/higgs_mlp.h5" "$unit" || fail "unit model path"
! grep -q "@SIGFLOW" "$unit" || fail "unit has unsubstituted variables"
grep -qx "EnvironmentFile=-$TMP/prefix/etc/sigflow/common.env" "$unit" || fail "unit does not read the installed common.env"
# The example configuration sets nothing: every line a comment.
! grep -v '^#' "$TMP/prefix/etc/sigflow/common.env" | grep -q . || fail "common.env sets something"
# A second install keeps an operator's common.env.
echo "SIGFLOW_GROUP=mine" >>"$TMP/prefix/etc/sigflow/common.env"
cmake --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/out" 2>"$TMP/err" || fail "second cmake --install"
grep -qx "SIGFLOW_GROUP=mine" "$TMP/prefix/etc/sigflow/common.env" || fail "a reinstall overwrote common.env"
# What the unit runs, as systemd would run it: its Environment= lines plus an
# instance's environment file, and ExecStart (here with --print-config).
mapfile -t unit_env < <(sed -n 's/^Environment=//p' "$unit")
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
env -i "${unit_env[@]}" SIGFLOW_BROKERS=kafka1:9093 SIGFLOW_GROUP=higgs $exec_start --print-config \
    >"$TMP/out" 2>"$TMP/err" || fail "the unit's command with its environment"
for line in "model=$TMP/prefix/share/sigflow/higgs_mlp.h5" "variables=$TMP/prefix/share/sigflow/higgs_variables.json" \
            log-format=json brokers=kafka1:9093 group=higgs; do
    grep -qxF "$line" "$TMP/out" || fail "the unit's configuration lacks $line"
done
if command -v systemd-analyze >/dev/null; then
    # Checks the syntax; a missing EnvironmentFile is not an error at this point.
    systemd-analyze verify --man=no "$unit" >"$TMP/err" 2>&1 || fail "systemd-analyze verify"
fi

# Relocatable: move the prefix, run from an unrelated directory.
mv "$TMP/prefix" "$TMP/moved"
mkdir "$TMP/elsewhere"
cd "$TMP/elsewhere" || fail "cd"
"$TMP/moved/bin/sigflow" demo --limit 400 --log-level info >"$TMP/out" 2>"$TMP/err" || fail "installed demo exited $?"
grep -qE '^predicted: +400$' "$TMP/out" || fail "installed demo did not predict 400 events"
grep -q "$TMP/moved/share/sigflow/higgs_mlp.h5" "$TMP/err" ||
    fail "installed demo did not use the installed model"

# sigflow-bench: its shortest run, only to see that it finds the shipped files.
"$TMP/moved/bin/sigflow-bench" --quick --json >"$TMP/out" 2>"$TMP/err" || fail "installed sigflow-bench exited $?"
grep -q "\"path\": \"$TMP/moved/share/sigflow/higgs_mlp.h5\"" "$TMP/out" ||
    fail "installed sigflow-bench did not use the installed model"
grep -q '"events_per_s"' "$TMP/out" || fail "sigflow-bench printed no throughput"

# A missing shipped file is an error naming the installed path, not a crash.
rm "$TMP/moved/share/sigflow/higgs_mlp.h5"
"$TMP/moved/bin/sigflow" demo --limit 10 >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "demo without its model: rc $rc"
grep -q "$TMP/moved/share/sigflow/higgs_mlp.h5" "$TMP/err" || fail "demo without its model: error names no path"
echo "install and relocation: ok"
