#!/usr/bin/env bash
# Prepare this machine to run LTB's playbooks: the Debian packages that building the Python
# environment needs, the virtualenv .venv with requirements.txt and the ltb package, and the
# Ansible collections that the `ansible` package no longer bundles (in .collections/).
#
# Idempotent, and quick when nothing is missing: each step is skipped when a stamp file says
# it was done for the current content of its inputs. Run from anywhere; needs root for apt.
#
# Environment:
#   LTB_PYTHON    interpreter for the virtualenv (default /usr/bin/python3, Debian's 3.11)
#   LTB_FORCE=1   redo every step, ignoring the stamps
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${LTB_PYTHON:-/usr/bin/python3}"
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"
COLLECTIONS="$ROOT/.collections"
FORCE="${LTB_FORCE:-0}"

# Debian packages needed to create the venv and build wheels that have no binary on PyPI.
# python3-apt: ansible.builtin.apt runs with the system Python's apt bindings.
# libvirt-dev: libvirt-python (requirements.txt) builds against it.
# chromium, chromium-driver: the portal's browser tests (tests/ui/) drive headless Chromium.
APT_PACKAGES=(python3-venv python3-dev python3-apt gcc pkg-config libvirt-dev chromium chromium-driver)

# The collection missing from ansible 12, and the PyPI release of `ansible` that bundles it.
OVS_COLLECTION=openvswitch/openvswitch
OVS_COLLECTION_VERSION=2.1.1
OVS_SOURCE_WHEEL_VERSION=10.7.0

say() { printf 'bootstrap: %s\n' "$*"; }

sha() { sha256sum "$@" | sha256sum | cut -c1-64; }

# stamp_ok NAME KEY: true when the stamp NAME records KEY (and LTB_FORCE is not set).
stamp_ok() { [[ "$FORCE" != 1 && -f "$VENV/.ltb-stamp-$1" && "$(cat "$VENV/.ltb-stamp-$1")" == "$2" ]]; }
stamp_set() { printf '%s\n' "$2" >"$VENV/.ltb-stamp-$1"; }

# 1. Debian packages -------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

# 2. Virtualenv ------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating $VENV with $PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# 3. Python packages -------------------------------------------------------------------------
req_key="$(sha requirements.txt)"
if stamp_ok requirements "$req_key"; then
    say "Python requirements up to date"
else
    say "installing Python requirements (requirements.txt)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    # No longer required, but a venv made before keeps it: ansible-playbook imports paramiko
    # whenever it is installed, which cost every run ~0.1-0.2 s.
    if "$VENV/bin/python" -m pip show --quiet paramiko 2>/dev/null; then
        say "removing paramiko and invoke (no longer used)"
        "$VENV/bin/python" -m pip uninstall --quiet --yes paramiko invoke
    fi
    stamp_set requirements "$req_key"
fi

# 4. The ltb package itself, editable ---------------------------------------------------------
if [[ -f pyproject.toml ]]; then
    pkg_key="$(sha pyproject.toml requirements.txt)"
    if stamp_ok ltb-package "$pkg_key" && "$VENV/bin/python" -c 'import ltb' 2>/dev/null; then
        say "ltb package installed (editable)"
    else
        say "installing the ltb package (pip install -e .)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
        stamp_set ltb-package "$pkg_key"
    fi
else
    say "no pyproject.toml yet: skipping the ltb package"
fi

# 5. openvswitch.openvswitch collection ---------------------------------------------------------
# Galaxy is not reachable, and ansible 12 does not bundle the collection: take it from the
# ansible 10.7.0 wheel on PyPI (a zip), extracting only that collection's files.
ovs_dir="$COLLECTIONS/ansible_collections/$OVS_COLLECTION"
ovs_key="$OVS_COLLECTION_VERSION from ansible==$OVS_SOURCE_WHEEL_VERSION"
if stamp_ok ovs-collection "$ovs_key" && [[ -f "$ovs_dir/MANIFEST.json" ]]; then
    say "collection ${OVS_COLLECTION/\//.} $OVS_COLLECTION_VERSION present"
else
    wheel_dir="$CACHE/wheels"
    mkdir -p "$wheel_dir"
    wheel="$(compgen -G "$wheel_dir/ansible-$OVS_SOURCE_WHEEL_VERSION-*.whl" | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        say "downloading ansible==$OVS_SOURCE_WHEEL_VERSION wheel (source of ${OVS_COLLECTION/\//.})"
        "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: --dest "$wheel_dir" "ansible==$OVS_SOURCE_WHEEL_VERSION"
        wheel="$(compgen -G "$wheel_dir/ansible-$OVS_SOURCE_WHEEL_VERSION-*.whl" | head -n1)"
    fi
    say "extracting ${OVS_COLLECTION/\//.} into ${COLLECTIONS#"$ROOT"/}/"
    rm -rf "$ovs_dir"
    "$VENV/bin/python" - "$wheel" "$COLLECTIONS" "$OVS_COLLECTION" "$OVS_COLLECTION_VERSION" <<'PY'
import json
import pathlib
import sys
import zipfile

wheel, dest, collection, version = sys.argv[1:5]
prefix = f"ansible_collections/{collection}/"
dest = pathlib.Path(dest)
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.infolist() if m.filename.startswith(prefix)]
    if not members:
        sys.exit(f"{wheel} holds no {prefix}")
    for member in members:
        target = dest / member.filename
        if not target.resolve().is_relative_to(dest.resolve()):
            sys.exit(f"unsafe path in wheel: {member.filename}")
        zf.extract(member, dest)
manifest = json.loads((dest / prefix / "MANIFEST.json").read_text())
found = manifest["collection_info"]["version"]
if found != version:
    sys.exit(f"{collection} in {wheel} is {found}, expected {version}")
PY
    stamp_set ovs-collection "$ovs_key"
fi

# 6. JavaScript of the portal's pages ----------------------------------------------------------
# npm packages pinned in portal/ui/package-lock.json, copied with their licences into
# portal/ui/static/vendor/ (served by the portal; never a CDN). axe-core is for the browser tests.
UI="$ROOT/portal/ui"
VENDOR="$UI/static/vendor"
if ! command -v npm >/dev/null; then
    say "installing Debian packages: nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
ui_key="$(sha "$UI/package-lock.json")"
if stamp_ok ui-vendor "$ui_key" && [[ -f "$VENDOR/htmx.min.js" && -f "$VENDOR/axe.min.js" && -f "$VENDOR/xterm.js" ]]; then
    say "portal JavaScript vendored"
else
    say "vendoring the portal's JavaScript (npm ci in portal/ui)"
    (cd "$UI" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    mkdir -p "$VENDOR"
    cp "$UI/node_modules/htmx.org/dist/htmx.min.js" "$VENDOR/htmx.min.js"
    cp "$UI/node_modules/htmx.org/LICENSE" "$VENDOR/htmx.LICENSE"
    cp "$UI/node_modules/axe-core/axe.min.js" "$VENDOR/axe.min.js"
    cp "$UI/node_modules/axe-core/LICENSE" "$VENDOR/axe-core.LICENSE"
    # The web terminal (portal/ui/static/terminal.js): xterm.js and its fit addon.
    cp "$UI/node_modules/@xterm/xterm/lib/xterm.js" "$VENDOR/xterm.js"
    cp "$UI/node_modules/@xterm/xterm/css/xterm.css" "$VENDOR/xterm.css"
    cp "$UI/node_modules/@xterm/xterm/LICENSE" "$VENDOR/xterm.LICENSE"
    cp "$UI/node_modules/@xterm/addon-fit/lib/addon-fit.js" "$VENDOR/addon-fit.js"
    cp "$UI/node_modules/@xterm/addon-fit/LICENSE" "$VENDOR/addon-fit.LICENSE"
    stamp_set ui-vendor "$ui_key"
fi

say "done"
