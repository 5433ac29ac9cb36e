#!/bin/bash
# Builds mailgate_VERSION_ARCH.deb from a release binary, with dpkg-deb and
# no debhelper. `make deb` runs it after its static release build
# (swift build -c release --static-swift-stdlib ..., see the Makefile).
#
#   deploy/debian/build.sh BINARY OUTPUT_DIR
#
# The version is the binary's own (`mailgate --version`, from BuildInfo.swift);
# deploy/debian/changelog must have an entry for it. Depends comes from
# dpkg-shlibdeps (the shared libraries the binary still needs) plus adduser
# (postinst). The package:
#   /usr/bin/mailgate                         stripped
#   /lib/systemd/system/mailgate.{socket,service}   deploy/systemd/, as shipped
#   /etc/nginx/snippets/mailgate{,-http}.conf       nginx/, conffiles
#   /usr/share/doc/mailgate/{copyright,changelog.gz,README.md.gz}
#   /usr/share/man/man1/mailgate.1.gz         help2man, from --help
# Old mailgate_*.deb files in OUTPUT_DIR are removed first, so it holds one.
# DEB_XZ_LEVEL: xz compression level (default 6).
set -euo pipefail
umask 022

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY OUTPUT_DIR" >&2
    exit 2
fi
binary=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

[ -x "$binary" ] || { echo "$0: no executable at $binary" >&2; exit 1; }
mkdir -p "$2"
out=$(cd "$2" && pwd)

# "mailgate 0.9.0 (commit 1a2b3c4d5e6f)"
version_line=$("$binary" --version)
version=$(sed -nE 's/^mailgate ([0-9A-Za-z.+~-]+) \(commit [^)]+\)$/\1/p' <<<"$version_line")
[ -n "$version" ] || { echo "$0: cannot read a version from '$version_line'" >&2; exit 1; }
changelog_version=$(sed -nE '1s/^mailgate \(([^)]+)\).*/\1/p' "$here/changelog")
if [ "$changelog_version" != "$version" ]; then
    echo "$0: the binary is version $version, deploy/debian/changelog's last entry is $changelog_version:" \
         "add an entry for $version" >&2
    exit 1
fi
arch=$(dpkg --print-architecture)

# Timestamps (help2man's date, dpkg-deb's mtimes): the commit's, not the
# build's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

work="$out/mailgate_${version}_${arch}"
rm -rf "$work" "$out"/mailgate_*.deb
root="$work/root"
mkdir -p "$root/DEBIAN"

install -D -m 0755 "$binary" "$root/usr/bin/mailgate"
# As dh_strip does: the symbol table and debug info go (64 MB left of 92,
# most of it ICU's data); the dynamic symbols, which include the public
# Swift ones, stay.
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/bin/mailgate"

install -D -m 0644 -t "$root/lib/systemd/system" \
    "$repo/deploy/systemd/mailgate.socket" "$repo/deploy/systemd/mailgate.service"
install -D -m 0644 -t "$root/etc/nginx/snippets" \
    "$repo/nginx/mailgate-http.conf" "$repo/nginx/mailgate.conf"

doc="$root/usr/share/doc/mailgate"
install -D -m 0644 "$here/copyright" "$doc/copyright"
# A native package (no Debian revision): the changelog is changelog.gz.
gzip -9n <"$here/changelog" >"$doc/changelog.gz"
gzip -9n <"$repo/README.md" >"$doc/README.md.gz"

# The manual page: `mailgate --help` as a page (help2man). Its indented
# "Typical set-up:" commands would be run together into one paragraph, so
# help2man reads the help without them (through a stand-in named mailgate)
# and they come back verbatim as EXAMPLES.
man="$root/usr/share/man/man1"
mkdir -p "$man" "$work/help2man"
help=$("$root/usr/bin/mailgate" --help)
printf '%s\n' "$help" | sed '/^Typical set-up:$/,/^$/d' >"$work/help2man/help.txt"
cat >"$work/help2man/mailgate" <<'SHIM'
#!/bin/sh
exec cat "$(dirname "$0")/help.txt"
SHIM
chmod 0755 "$work/help2man/mailgate"
{
    echo '[EXAMPLES]'
    echo '.nf'
    printf '%s\n' "$help" | sed -n '/^Typical set-up:$/,/^$/p' | sed -e '1d' -e '/^$/d' -e 's/\\/\\e/g' -e 's/^/\\\&/'
    echo '.fi'
    cat <<'H2M'
[SEE ALSO]
.B mailgate help
.I COMMAND
(init, serve, user, integration, token) describes each command and its
options.
/usr/share/doc/mailgate/README.md.gz describes the HTTP interface, running
Mailgate behind nginx or Apache, and its security.
H2M
} >"$work/help2man/extra.h2m"
help2man --no-info --section 1 --version-string "$version" \
    --name "send email over HTTP: a FastCGI responder for nginx" \
    --include "$work/help2man/extra.h2m" --output "$work/mailgate.1" "$work/help2man/mailgate"
gzip -9n <"$work/mailgate.1" >"$man/mailgate.1.gz"
chmod 0644 "$man/mailgate.1.gz"

# Depends: the shared libraries the binary still needs, by their packages'
# shlibs/symbols files (dpkg-shlibdeps wants a debian/control to exist).
mkdir -p "$work/shlibs/debian"
printf 'Source: mailgate\n\nPackage: mailgate\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$root/usr/bin/mailgate")
shlibs=${shlibs#shlibs:Depends=}
[ -n "$shlibs" ] || { echo "$0: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
depends="adduser, $shlibs"

installed_size=$(du -k -s --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    -e "s/@DEPENDS@/$depends/" "$here/control.in" >"$root/DEBIAN/control"

printf '/etc/nginx/snippets/mailgate-http.conf\n/etc/nginx/snippets/mailgate.conf\n' >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$root/DEBIAN/$script"
done
# Every file but the conffiles (dpkg keeps their sums itself), as dh_md5sums.
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

deb="$out/mailgate_${version}_${arch}.deb"
# xz -6 (dpkg's default) takes ~50 s on 2 cores; `make test` asks for -1
# (~13 s, 18 MB instead of 16).
dpkg-deb --root-owner-group -Zxz -z"${DEB_XZ_LEVEL:-6}" --build "$root" "$deb" >/dev/null
echo "built $deb ($version_line; Depends: $depends)"
