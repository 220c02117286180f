# test_deb.sh: `cpack -G DEB` builds a package holding exactly the installed
# files under /usr, depending on the runtime libraries the binaries link
# (found by dpkg-shlibdeps), and its binaries run from the unpacked tree with
# the packaged data. Skipped (status 77) only where dpkg-deb is absent.
set -u
BUILD=$SIGFLOW_BUILD_DIR
if ! command -v dpkg-deb >/dev/null; then
    echo "SKIP: dpkg-deb not installed, the Debian package is not checked"
    exit 77
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sf_test_deb.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; [ -s "$TMP/log" ] && tail -n 20 "$TMP/log" | sed 's/^/  cpack: /' >&2; exit 1; }

cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$TMP/out" >"$TMP/log" 2>&1 || fail "cpack -G DEB"
debs=("$TMP"/out/sigflow_*_amd64.deb "$TMP"/out/sigflow_*.deb)
deb=${debs[0]}
[ -f "$deb" ] || deb=${debs[1]}
[ -f "$deb" ] || fail "no sigflow_*.deb in $(ls "$TMP/out")"

# The file list, exactly (directories aside).
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./||' | sort >"$TMP/files"
sort >"$TMP/expected" <<'LIST'
usr/bin/sigflow
usr/bin/sigflow-bench
usr/bin/sigflow-replay
usr/lib/systemd/system/sigflow@.service
usr/libexec/sigflow/sigflow-loader
usr/share/man/man1/sigflow-bench.1
usr/share/man/man1/sigflow-replay.1
usr/share/man/man1/sigflow.1
usr/share/sigflow/atlas-higgs-challenge-2014-v2-sample.csv.gz
usr/share/sigflow/corrupt_segv_2130_10.h5.gz
usr/share/sigflow/grafana/sigflow.json
usr/share/sigflow/higgs_mlp.h5
usr/share/sigflow/higgs_variables.json
usr/share/sigflow/sandbox_external_link.h5
LIST
diff -u "$TMP/expected" "$TMP/files" >"$TMP/diff" || { cat "$TMP/diff" >&2; fail "package file list"; }

# Dependencies: every runtime library the binaries link, from dpkg-shlibdeps.
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 librdkafka1 libjansson4 libopenblas libevent- libhdf5- zlib1g libseccomp2; do
    case "$depends" in *"$lib"*) ;; *) fail "Depends lacks $lib: $depends" ;; esac
done
[ "$(dpkg-deb -f "$deb" Package)" = sigflow ] || fail "package name"

# The unpacked binaries run and find the packaged model (relocation again).
dpkg-deb -x "$deb" "$TMP/root" || fail "dpkg-deb -x"
grep -qx "ExecStart=/usr/bin/sigflow run" "$TMP/root/usr/lib/systemd/system/sigflow@.service" ||
    fail "unit does not start /usr/bin/sigflow"
"$TMP/root/usr/bin/sigflow" inspect --json --model "$TMP/root/usr/share/sigflow/higgs_mlp.h5" \
    --variables "$TMP/root/usr/share/sigflow/higgs_variables.json" >"$TMP/inspect" 2>"$TMP/log" ||
    fail "packaged sigflow inspect of the packaged model"
grep -q '"sha256"' "$TMP/inspect" || fail "packaged sigflow inspect printed no model"
echo "package $(basename "$deb"): $(wc -l <"$TMP/files") files; Depends: $depends"
