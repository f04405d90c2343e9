#!/usr/bin/env bash
# make deb: builds build/hookwork_VERSION_ARCH.deb with dpkg-deb from a
# `make install` into a staging root (PREFIX=/usr).  Depends is computed
# from the binary's own NEEDED libraries, so it follows what is linked.
set -eu
cd "$(dirname "$0")/.."
version=$(sed -n 's/^#define HW_VERSION "\(.*\)"/\1/p' core/engine.h)
arch=$(dpkg --print-architecture)
root=build/deb/root
rm -rf build/deb
make --no-print-directory install PREFIX=/usr DESTDIR="$PWD/$root" >/dev/null

# Debian documentation files every package carries
doc=$root/usr/share/doc/hookwork
install -d "$doc"
{ echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: hookwork"
  echo
  echo "Files: *"
  echo "Copyright: 2026 the hookwork authors"
  echo "License: Expat"
  sed 's/^$/./; s/^/ /' LICENSE | tail -n +3; } > "$doc/copyright"
printf 'hookwork (%s) unstable; urgency=medium\n\n  * Package built from the hookwork repository.\n\n -- hookwork authors <hookwork@example.org>  %s\n' \
  "$version" "$(date -R -d @0)" | gzip -9n > "$doc/changelog.gz"

# Depends: the package of each library the binary links directly
deps=""
for lib in $(objdump -p hookwork | awk '/NEEDED/ {print $2}'); do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|x86_64|aarch64/ {print $NF; exit}')
  [ -n "$path" ] || continue
  real=$(readlink -f "$path")
  pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true)
  pkg=${pkg%%:*}
  [ -n "$pkg" ] && deps="$deps $pkg"
done
depends=$(printf '%s\n' $deps | sort -u | paste -sd, | sed 's/,/, /g')

install -d "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CTRL
Package: hookwork
Version: $version
Architecture: $arch
Maintainer: hookwork authors <hookwork@example.org>
Installed-Size: $size
Depends: $depends
Section: net
Priority: optional
Homepage: http://localhost/
Description: webhook cycle engine
 hookwork runs cycles: workflows of Lua steps started by webhook requests,
 calling remote systems over HTTP, answering callers synchronously and
 parking transactions until a matching request resumes them.  Accepted
 requests are stored durably before they are acknowledged.
CTRL
cat > "$root/DEBIAN/conffiles" <<CONF
/etc/hookwork/cycles/hello.lua
CONF
# maintainer scripts in the shape dh_installsystemd generates: enable and
# start the unit on install, stop it on removal
cat > "$root/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ]; then
  if command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper unmask hookwork.service >/dev/null || true
    if deb-systemd-helper --quiet was-enabled hookwork.service; then
      deb-systemd-helper enable hookwork.service >/dev/null || true
    else
      deb-systemd-helper update-state hookwork.service >/dev/null || true
      deb-systemd-helper enable hookwork.service >/dev/null || true
    fi
  fi
  if [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null; then
    systemctl --system daemon-reload >/dev/null || true
    deb-systemd-invoke restart hookwork.service >/dev/null || true
  fi
fi
POST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ] && command -v deb-systemd-invoke >/dev/null; then
  deb-systemd-invoke stop hookwork.service >/dev/null || true
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
if [ "$1" = "purge" ] && command -v deb-systemd-helper >/dev/null; then
  deb-systemd-helper purge hookwork.service >/dev/null || true
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
# a first cycle so the service starts with something to serve
install -d "$root/etc/hookwork/cycles"
install -m 0644 cycles/hello.lua "$root/etc/hookwork/cycles/hello.lua"
out=build/hookwork_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out"
