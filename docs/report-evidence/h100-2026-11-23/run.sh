#!/bin/bash
# Run on the lent GPU machine (issue 4): the host variant's report, verdict and gate, for real.
set -x
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
nvidia-smi > $OUT/nvidia-smi.txt; nvidia-smi -L
python3 -c "import pytest, pynvml; print('pytest', pytest.__version__)"
R=$OUT/reports
python3 -m pytest suites --variant host -o addopts="-p no:cacheprovider -rfE" --reports-dir=$R --html=$R/report.html \
  --self-contained-html --junitxml=$R/junit.xml 2>&1 | tail -25 > $OUT/pytest-host.txt
cat $OUT/pytest-host.txt
python3 -m rendergate --reports-dir=$R gate host > $OUT/gate-host.txt 2>&1; echo "gate rc=$?" >> $OUT/gate-host.txt
cat $OUT/gate-host.txt
# the same host under the known-bad manifest that also requires NVENC, which an H100 lacks (no ffmpeg
# here either): the gate must refuse
mkdir -p /tmp/v/host && printf '[requirements]\ngpu = true\nnvenc = ["h264_nvenc"]\n' > /tmp/v/host/manifest.toml
R2=$OUT/reports-nvenc
python3 -m pytest suites --variant host --images-dir=/tmp/v -o addopts="-p no:cacheprovider -rfE" --reports-dir=$R2 \
  --html=$R2/report.html --self-contained-html 2>&1 | tail -12 > $OUT/pytest-host-nvenc.txt
cat $OUT/pytest-host-nvenc.txt
python3 -m rendergate --images-dir=/tmp/v --reports-dir=$R2 gate host > $OUT/gate-host-nvenc.txt 2>&1; echo "gate rc=$?" >> $OUT/gate-host-nvenc.txt
cat $OUT/gate-host-nvenc.txt
