#!/usr/bin/env bash
# make-base.sh: the Containerfile's two base images, debian:bookworm (the build
# stage) and debian:bookworm-slim (the image), made here with debootstrap for
# machines that reach Debian's mirrors but no container registry. The root
# file systems are cached as tarballs keyed by the day (a new day brings the
# day's security updates), outside any build tree, and imported into podman
# once per tarball; a run on the same day reuses both, so podman's layer cache
# holds.
#
#   make-base.sh      prints the two image names, build image first
#
# The slim one is stripped as Debian's official slim image is: no
# documentation, man pages, info or locales, no apt caches or lists, and a dpkg
# configuration that keeps the packages installed later from adding them back.
# Environment: SIGFLOW_IMAGE_CACHE (default /var/cache/sigflow, else
# ~/.cache/sigflow where that is not writable), DEBIAN_MIRROR.
set -euo pipefail

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${SIGFLOW_IMAGE_CACHE:-/var/cache/sigflow}
if ! mkdir -p "$cache" 2>/dev/null || [[ ! -w $cache ]]; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/sigflow
    mkdir -p "$cache"
fi
day=$(date -u +%Y%m%d)
full=$cache/debian-bookworm-$day.tar
slim=$cache/debian-bookworm-slim-$day.tar
full_image=localhost/sigflow-base/debian:bookworm
slim_image=localhost/sigflow-base/debian:bookworm-slim

die() { echo "make-base.sh: $*" >&2; exit 1; }

make_rootfs() {
    command -v debootstrap >/dev/null || die "debootstrap not installed"
    [[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
    local work root
    work=$(mktemp -d "$cache/rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    root=$work/root
    echo "make-base.sh: debootstrap --variant=minbase bookworm (log: $work/debootstrap.log)" >&2
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # The sources and apt settings of Debian's own images: the release, its
    # updates and security; no translations; caches cleaned after each install.
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CLEAN
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    # The day's security updates.
    chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade' \
        >"$work/upgrade.log" 2>&1 || { tail -n 20 "$work/upgrade.log" >&2; die "apt-get upgrade in the new root failed"; }
    clean_apt "$root"
    tar -C "$root" --numeric-owner -cf "$full.part" . && mv "$full.part" "$full"

    # slim: what Debian's slim images leave out, now and for later installs
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EXCLUDE'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EXCLUDE
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    tar -C "$root" --numeric-owner -cf "$slim.part" . && mv "$slim.part" "$slim"
    rm -rf "$work"
    trap - EXIT
    # yesterday's tarballs go
    find "$cache" -maxdepth 1 -name 'debian-bookworm*.tar' -not -name "*-$day.tar" -delete
}

clean_apt() {
    rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/apt/* "$1"/var/log/dpkg.log \
           "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old
}

# Imports TARBALL as IMAGE unless IMAGE already is that tarball (its label).
import() { # tarball image
    local have old
    have=$(podman image inspect --format '{{index .Labels "org.sigflow.base"}}' "$2" 2>/dev/null || true)
    [[ $have == "$(basename "$1")" ]] && return 0
    old=$(podman image inspect --format '{{.Id}}' "$2" 2>/dev/null || true)
    podman import --change "LABEL org.sigflow.base=$(basename "$1")" --change 'CMD ["bash"]' \
        "$1" "$2" >/dev/null || die "podman import $1 failed"
    # the previous day's base, unless an image still builds on it
    [[ -n $old ]] && podman rmi "$old" >/dev/null 2>&1 || true
}

[[ -f $full && -f $slim ]] || make_rootfs
import "$full" "$full_image"
import "$slim" "$slim_image"
echo "$full_image"
echo "$slim_image"
