#!/bin/bash
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/bin && cp .dev/ffmpeg-nvenc /tmp/bin/ffmpeg && cp .dev/ffprobe-min /tmp/bin/ffprobe && export PATH=/tmp/bin:$PATH
mkdir -p /tmp/v/host /tmp/r
printf '[requirements]\ngpu = true\nhost_ready = true\nnvenc = ["h264_nvenc", "hevc_nvenc"]\n' > /tmp/v/host/manifest.toml
python3 -m pytest suites --variant host --images-dir=/tmp/v -p no:cacheprovider --reports-dir=/tmp/r -q 2>&1 | tail -3
cp /tmp/r/verdicts/host.json $OUT/h100-host-nvenc-unsupported.json
