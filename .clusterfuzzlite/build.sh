#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build for pfdiff: one atheris fuzzer per registered arch, rendered
# from fuzz/templates/arch_fuzzer.py.in, so a new arch in arches/__init__.py needs no change here.
# Each <arch>_fuzzer ships with <arch>_fuzzer_seed_corpus.zip and <arch>_fuzzer.dict.

cd "$SRC/pfdiff"
pip3 install .

# The registry imports arches by name at run time (importlib), which PyInstaller cannot see:
# bundle every submodule, and Unicorn's and Capstone's native libraries.
bundle=(--collect-submodules arches --collect-submodules harness --collect-submodules fuzz
        --collect-all unicorn --collect-all capstone)

for arch in $(python3 -m fuzz.cflite arches); do
  fuzzer="$SRC/${arch}_fuzzer.py"
  python3 -m fuzz.cflite render "$arch" "$fuzzer"
  compile_python_fuzzer "$fuzzer" "${bundle[@]}"
  python3 -m fuzz.cflite seeds "$arch" "$OUT/${arch}_fuzzer_seed_corpus.zip"
  python3 -m fuzz.cflite dict "$arch" "$OUT/${arch}_fuzzer.dict"
done
