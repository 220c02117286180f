# test_deb.sh: `cpack -G DEB` builds a package holding exactly the installed
# files under /usr (and the example /etc/sigflow/common.env, a conffile),
# depending on the runtime libraries the binaries link (found by
# dpkg-shlibdeps), with stripped binaries, compressed man pages, a copyright
# file and a changelog, that lintian finds no error in; its binaries run from
# the unpacked tree with the packaged data. Its systemd unit has no
# placeholder left, does not restart after exit 2, passes systemd-analyze
# verify and rates 4.0 or lower in systemd-analyze security (where systemd-analyze
# exists). Skipped (status 77) only where dpkg-deb is absent.
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
etc/sigflow/common.env
usr/bin/sigflow
usr/bin/sigflow-bench
usr/bin/sigflow-replay
usr/lib/systemd/system/sigflow@.service
usr/libexec/sigflow/sigflow-loader
usr/share/doc/sigflow/changelog.gz
usr/share/doc/sigflow/copyright
usr/share/man/man1/sigflow-bench.1.gz
usr/share/man/man1/sigflow-replay.1.gz
usr/share/man/man1/sigflow.1.gz
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
case "$(dpkg-deb -f "$deb" Maintainer)" in *@localhost* | "") fail "maintainer: $(dpkg-deb -f "$deb" Maintainer)" ;; esac
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$TMP/conffiles" 2>/dev/null
grep -qx /etc/sigflow/common.env "$TMP/conffiles" || fail "common.env is not a conffile"

# lintian: no error (warnings are shown).
if command -v lintian >/dev/null; then
    lintian "$deb" >"$TMP/lintian" 2>&1; rc=$? # 1 on an error tag, more when it could not run
    ! grep -q '^E:' "$TMP/lintian" && [ $rc -eq 0 ] || fail "lintian (rc $rc): $(grep -v '^W:' "$TMP/lintian")"
    grep '^W:' "$TMP/lintian" || true
else
    echo "lintian not installed: the package's policy is not checked"
fi

# The unpacked binaries run and find the packaged model (relocation again).
dpkg-deb -x "$deb" "$TMP/root" || fail "dpkg-deb -x"
grep -qx "ExecStart=/usr/bin/sigflow run" "$TMP/root/usr/lib/systemd/system/sigflow@.service" ||
    fail "unit does not start /usr/bin/sigflow"
"$TMP/root/usr/bin/sigflow" inspect --json --model "$TMP/root/usr/share/sigflow/higgs_mlp.h5" \
    --variables "$TMP/root/usr/share/sigflow/higgs_variables.json" >"$TMP/inspect" 2>"$TMP/log" ||
    fail "packaged sigflow inspect of the packaged model"
grep -q '"sha256"' "$TMP/inspect" || fail "packaged sigflow inspect printed no model"
for b in sigflow sigflow-replay sigflow-bench; do
    file "$TMP/root/usr/bin/$b" | grep -q ', stripped' || fail "$b is not stripped: $(file "$TMP/root/usr/bin/$b")"
done
zcat "$TMP/root/usr/share/man/man1/sigflow.1.gz" | grep -q '^\.TH SIGFLOW 1' || fail "sigflow.1.gz"
zcat "$TMP/root/usr/share/doc/sigflow/changelog.gz" | head -n1 | grep -q "^sigflow ($(dpkg-deb -f "$deb" Version))" ||
    fail "the changelog is not of this version"

# The unit: no placeholder, no retry of a configuration that exit 2 refused.
unit=$TMP/root/usr/lib/systemd/system/sigflow@.service
! grep -qE '@[A-Z_]+@|filled in at install' "$unit" || fail "placeholder in the unit: $(grep -E '@[A-Z_]+@|filled in' "$unit")"
grep -qx "RestartPreventExitStatus=2" "$unit" || fail "the unit restarts after exit 2"
grep -qx "EnvironmentFile=-/etc/sigflow/common.env" "$unit" || fail "the unit does not read /etc/sigflow/common.env"
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$TMP/units"
    cp "$unit" "$TMP/units/sigflow@test.service"
    systemd-analyze security --offline=yes "$TMP/units/sigflow@test.service" >"$TMP/security" 2>&1 ||
        fail "systemd-analyze security: $(tail -n 3 "$TMP/security")"
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$TMP/security")
    [ -n "$score" ] || fail "no exposure level: $(tail -n 3 "$TMP/security")"
    awk -v s="$score" 'BEGIN {exit !(s <= 4.0)}' || fail "systemd-analyze security rates the unit $score (> 4.0)"
    echo "systemd-analyze security: $score"
    # verify, with the unit's paths made to exist: ExecStart in the unpacked
    # tree, its man page on MANPATH.
    sed "s|/usr/bin/sigflow|$TMP/root/usr/bin/sigflow|" "$unit" >"$TMP/units/sigflow@test.service"
    MANPATH=$TMP/root/usr/share/man systemd-analyze verify "$TMP/units/sigflow@test.service" >"$TMP/verify" 2>&1 ||
        fail "systemd-analyze verify: $(cat "$TMP/verify")"
    [ ! -s "$TMP/verify" ] || fail "systemd-analyze verify: $(cat "$TMP/verify")"
else
    echo "systemd-analyze not installed: the unit's sandbox is not rated"
fi
echo "package $(basename "$deb"): $(wc -l <"$TMP/files") files; Depends: $depends"
