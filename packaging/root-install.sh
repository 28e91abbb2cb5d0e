#!/usr/bin/env bash
# Install a coffer .deb into a throw-away root and check the user, paths,
# permissions and the enabled-but-not-started unit. Run as root; called by
# packaging/check.sh. The root is a small skeleton whose /usr is an overlay
# of this system's /usr (so dpkg, adduser and deb-systemd-helper run for
# real inside the chroot, and the host stays untouched).
#   usage: packaging/root-install.sh PACKAGE.deb
set -euo pipefail
DEB=$(realpath "$1")
fail() { echo "FAIL: $*" >&2; exit 1; }

if [ "${COFFER_IN_NS:-}" != 1 ]; then
    # Re-enter in a private mount namespace: the overlay disappears with it.
    exec unshare -m env COFFER_IN_NS=1 "$0" "$DEB"
fi

WORK=$(mktemp -d)
trap 'umount "$WORK/root/usr" "$WORK/root/dev" 2>/dev/null || true; rm -rf "$WORK"' EXIT
R="$WORK/root"
mkdir -p "$WORK"/{up,ovl} "$R"/{etc,usr,dev,tmp,run,var/lib/dpkg/{info,updates,triggers,alternatives},var/log,var/cache}
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$WORK/up,workdir=$WORK/ovl" "$R/usr"
mount --bind /dev "$R/dev"
for l in bin sbin lib lib64; do ln -s "usr/$l" "$R/$l"; done
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
for f in passwd group shadow gshadow adduser.conf login.defs nsswitch.conf; do
    [ -e "/etc/$f" ] && cp -a "/etc/$f" "$R/etc/"
done
chmod 1777 "$R/tmp"
cp "$DEB" "$R/tmp/coffer.deb"

chroot "$R" dpkg --force-depends --install /tmp/coffer.deb

check() { # path owner:group octal-mode
    local got
    got=$(chroot "$R" stat -c '%U:%G %a' "$1" 2>/dev/null) || fail "$1 not installed"
    [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
    echo "ok   $1 $got"
}
entry=$(chroot "$R" getent passwd coffer) || fail "no coffer user"
echo "ok   user: $entry"
uid=$(cut -d: -f3 <<<"$entry")
[ "$uid" -lt 1000 ] || fail "coffer uid $uid is not a system uid"
[[ "$entry" == *":/var/lib/coffer:/usr/sbin/nologin" ]] || fail "coffer home/shell: $entry"
chroot "$R" getent group coffer >/dev/null || fail "no coffer group"
check /usr/bin/coffer root:root 755
check /var/lib/coffer coffer:coffer 700
check /etc/coffer/coffer.toml root:coffer 640
check /usr/lib/systemd/system/coffer.service root:root 644
[ -L "$R/etc/systemd/system/multi-user.target.wants/coffer.service" ] || fail "the unit is not enabled"
echo "ok   unit enabled"
if grep -Eq 'deb-systemd-invoke (\$_dh_action|start|restart)' "$R/var/lib/dpkg/info/coffer.postinst"; then
    fail "postinst starts the unit"
fi
echo "ok   postinst does not start the unit"
chroot "$R" /usr/bin/coffer --version
# Upgrade in place keeps an operator's config mode.
chroot "$R" chmod 0600 /etc/coffer/coffer.toml
chroot "$R" dpkg --force-depends --install /tmp/coffer.deb >/dev/null
check /etc/coffer/coffer.toml root:coffer 600
# Remove (not purge) keeps data and user.
chroot "$R" dpkg --force-depends --purge coffer >/dev/null
[ -d "$R/var/lib/coffer" ] || fail "purge deleted /var/lib/coffer"
chroot "$R" getent passwd coffer >/dev/null || fail "purge deleted the user"
echo "ok   purge keeps /var/lib/coffer and the user"
