#!/bin/bash
# Install peripety on Debian 12 into its own venv, as root:
#
#     scripts/install.sh [VENV]        (default VENV: /opt/peripety)
#
# Debian's Python is "externally managed" (PEP 668): plain `pip install .`
# is refused, so peripety gets a venv that also sees Debian's python3-bpfcc,
# python3-systemd and python3-pyudev (--system-site-packages). The programs,
# man pages and shell completions are then linked under LINK_PREFIX
# (default /usr/local), where PATH, man, bash-completion and zsh look, and the
# systemd unit is installed with ExecStart pointing into the venv.
#
# Environment: LINK_PREFIX (default /usr/local); SYSTEMD_DIR (default
# /etc/systemd/system; set it empty to skip the unit, catalog and config).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-/opt/peripety}
LINK_PREFIX=${LINK_PREFIX:-/usr/local}
SYSTEMD_DIR=${SYSTEMD_DIR-/etc/systemd/system}

missing=()
for p in python3-venv python3-systemd python3-pyudev python3-bpfcc; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade .

link() {  # link SOURCE DIR: DIR/basename -> SOURCE
    install -d "$2"
    ln -sfn "$1" "$2/$(basename "$1")"
}
for prog in prpt peripetyd; do
    link "$VENV/bin/$prog" "$LINK_PREFIX/bin"
    link "$VENV/share/bash-completion/completions/$prog" "$LINK_PREFIX/share/bash-completion/completions"
    link "$VENV/share/zsh/site-functions/_$prog" "$LINK_PREFIX/share/zsh/site-functions"
done
link "$VENV/share/man/man1/prpt.1" "$LINK_PREFIX/share/man/man1"
link "$VENV/share/man/man8/peripetyd.8" "$LINK_PREFIX/share/man/man8"
command -v mandb >/dev/null && mandb -q "$LINK_PREFIX/share/man" 2>/dev/null || true
# example alert programs for [[notify]] (mail through sendmail, webhook through curl)
install -d "$LINK_PREFIX/share/peripety/contrib/notify"
install -m 755 contrib/notify/mail contrib/notify/webhook "$LINK_PREFIX/share/peripety/contrib/notify/"

if [ -n "$SYSTEMD_DIR" ]; then
    install -d "$SYSTEMD_DIR"
    sed "s|^ExecStart=.*|ExecStart=$VENV/bin/peripetyd|" systemd/peripetyd.service >"$SYSTEMD_DIR/peripetyd.service"
    install -D -m 644 systemd/peripety.catalog /usr/lib/systemd/catalog/peripety.catalog
    command -v journalctl >/dev/null && journalctl --update-catalog || true
    [ -e /etc/peripetyd.conf ] || install -m 644 etc/peripetyd.conf /etc/peripetyd.conf
    command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true
fi
echo "install: peripety $("$VENV/bin/peripetyd" --version | awk '{print $NF}') in $VENV; programs in $LINK_PREFIX/bin"
