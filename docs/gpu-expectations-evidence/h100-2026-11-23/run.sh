#!/bin/bash
# Issue 5 evidence on the lent GPU machine: expectations (NVENC on an H100), readiness, GpuInfo.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/bin && cp .dev/ffmpeg-nvenc /tmp/bin/ffmpeg && cp .dev/ffprobe-min /tmp/bin/ffprobe && export PATH=/tmp/bin:$PATH
A="-o addopts=-p no:cacheprovider -rfE"
for case in plain must-have; do
  mkdir -p /tmp/v-$case/host
  printf '[requirements]\ngpu = true\nhost_ready = true\nnvenc = ["h264_nvenc", "hevc_nvenc"]\n' > /tmp/v-$case/host/manifest.toml
  [ $case = must-have ] && printf 'gpu_must_have = ["nvenc"]\n' >> /tmp/v-$case/host/manifest.toml
  R=$OUT/$case
  python3 -m pytest suites --variant host --images-dir=/tmp/v-$case "$A" --reports-dir=$R --html=$R/report.html \
    --self-contained-html 2>&1 | grep -v "^$" | tail -14 > $OUT/pytest-$case.txt
  cat $OUT/pytest-$case.txt
  python3 -m rendergate --images-dir=/tmp/v-$case --reports-dir=$R gate host > $OUT/gate-$case.txt 2>&1; echo "gate rc=$?" >> $OUT/gate-$case.txt
  cat $OUT/gate-$case.txt
done
python3 -c "from rendergate.core.environment import describe_host; import json; print(json.dumps(describe_host(), indent=1))" > $OUT/describe-host.json
cat $OUT/describe-host.json
