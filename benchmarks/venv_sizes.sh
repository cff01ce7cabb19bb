#!/usr/bin/env bash
# Disk size of each install variant: core, core+tf, core+wav2vec2, all (issue 17, "a lean core").
#
#   benchmarks/venv_sizes.sh [WORKDIR]        # default: a new temporary folder, removed at the end
#
# Each variant is a fresh venv with this checkout installed (not editable) and its extra; torch
# is installed first from its pinned CPU build (an unpinned 'torch' resolves to a multi-GB CUDA
# build). Prints `du -sh` of each venv, then the largest packages of the core.
# PYTHON picks the interpreter (default: python3); VARIANTS a subset ("core all"); KEEP=1 keeps
# WORKDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
if [[ $# -ge 1 ]]; then WORK=$1; mkdir -p "$WORK"; else WORK=$(mktemp -d); fi
[[ ${KEEP:-0} == 1 || $# -ge 1 ]] || trap 'rm -rf "$WORK"' EXIT

variant() {  # name, then pip arguments (run in order; '--' separates pip calls)
    local name=$1; shift
    local venv=$WORK/$name
    rm -rf "$venv"
    "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip 'setuptools<81' wheel
    local args=()
    for a in "$@" --; do
        if [[ $a == -- ]]; then
            [[ ${#args[@]} -gt 0 ]] && "$venv/bin/python" -m pip install -q "${args[@]}"
            args=()
        else
            args+=("$a")
        fi
    done
    # pip's own cache and bytecode are not part of what an install costs
    "$venv/bin/python" -m pip cache purge -q >/dev/null 2>&1 || true
}

VARIANTS=${VARIANTS:-core core+tf core+wav2vec2 all}
for name in $VARIANTS; do
    case $name in
        core) variant core "$ROOT" ;;
        core+tf) variant core+tf "$ROOT[tf]" ;;
        core+wav2vec2) variant core+wav2vec2 "$TORCH" -- "$ROOT[wav2vec2]" ;;
        all) variant all "$TORCH" -- "$ROOT[all]" ;;
        *) echo "unknown variant $name" >&2; exit 2 ;;
    esac
done

echo "== venv sizes (du -sh)"
for name in $VARIANTS; do
    du -sh "$WORK/$name" | sed "s|$WORK/||"
done
[[ " $VARIANTS " == *" core "* ]] || exit 0
echo "== largest packages in core"
site=$("$WORK/core/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
du -s "$site"/* 2>/dev/null | sort -rn | head -10 | awk '{printf "%6.1f MB  %s\n", $1/1024, $2}' \
    | sed "s|$site/||"
echo "== core: a TFLite scan of sample_audio without TensorFlow or torch"
"$WORK/core/bin/python" -c 'import importlib.util as u, sys
missing = [m for m in ("tensorflow", "torch", "transformers") if u.find_spec(m)]
sys.exit(f"core has {missing}" if missing else 0)'
if [[ -n ${SCANNER_MODEL_DIR:-} ]]; then
    (cd "$WORK" && "$WORK/core/bin/scanner" scan "$ROOT/sample_audio" -o "$WORK/core-scan.parquet")
fi
