# Sourced by scripts/run.sh and scripts/test.sh: create .venv (once) and install flowsentinel into it.
# The CPU build of torch is pinned first: any other torch pulls a multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLOWSENTINEL_VENV:-$root/.venv}"
extras="${1:-}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
stamp="$venv/.flowsentinel-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    python -m pip install --quiet --upgrade pip
    # the CPU build from the PyTorch CPU index; where that index cannot be reached (a mirror-only network),
    # what the configured index and find-links hold (a plain `pip install torch` there may be the CUDA build)
    if ! python -m pip install --quiet --timeout 20 --retries 1 \
        --index-url https://download.pytorch.org/whl/cpu torch==2.13.0; then
        echo "the PyTorch CPU index could not be used; installing torch==2.13.0 from the configured index" >&2
        python -m pip install --quiet torch==2.13.0
    fi
    python -m pip install --quiet -e "$root${extras:+[$extras]}"
    touch "$stamp"
fi
cd "$root"
