# Sourced by the other scripts: create or reuse the project's virtualenv and install gankit
# into it (editable, with the test tools). Re-installs only when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GANKIT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[gankit] creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.gankit-install-stamp"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || ! "$VENV/bin/python" -c "import gankit" 2>/dev/null; then
  echo "[gankit] installing gankit and its dependencies (torch is the big one; a minute or two)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/python" -c "import gankit, torch, torchvision" # fail loudly if the install did not work
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
