#!/bin/bash
# Issue 5 evidence on the lent GPU machine: NVML identity, readiness facts, driver files.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
E=$OUT
python3 rendergate/probes/nvml.py --xid > $E/nvml-probe-v2.json; echo "probe rc=$?"; cat $E/nvml-probe-v2.json
cat /proc/driver/nvidia/version > $E/proc-driver-nvidia-version.txt 2>&1; cat $E/proc-driver-nvidia-version.txt
ls -l /dev/nvidia* > $E/dev-nvidia.txt 2>&1; cat $E/dev-nvidia.txt
(dmesg 2>&1 | grep -i -E "xid|NVRM" | tail -20) > $E/dmesg-nvrm.txt; echo "dmesg rc=$?"; head -5 $E/dmesg-nvrm.txt
which dcgmi nv-hostengine nvidia-ctk nvidia-container-cli > $E/which.txt 2>&1; cat $E/which.txt
nvidia-smi --query-gpu=index,name,pci.device_id,persistence_mode,mig.mode.current,encoder.stats.sessionCount,compute_cap --format=csv > $E/nvidia-smi-query-v2.csv 2>&1; cat $E/nvidia-smi-query-v2.csv
(ldconfig -p | grep -E "libnvidia-encode|libnvcuvid|libGLX_nvidia|libEGL_nvidia|libnvoptix|libcuda.so|libnvidia-ml") > $E/ldconfig-nvidia.txt; cat $E/ldconfig-nvidia.txt
(find / -xdev \( -name nvidia_drv.so -o -name "nvidia_icd*.json" -o -name "10_nvidia*.json" -o -name libglxserver_nvidia.so* \) 2>/dev/null) > $E/nvidia-files.txt; cat $E/nvidia-files.txt
python3 - <<'PY' > $E/nvml-no-library.txt 2>&1
# NVML with its library absent, as on a host with no driver: the real error pynvml raises
import ctypes.util, pynvml, os
os.environ["LD_LIBRARY_PATH"] = "/nonexistent"
try:
    pynvml._nvmlLib = None
    pynvml.nvmlInit()
    print("nvml started")
except pynvml.NVMLError as e:
    print(type(e).__name__, e)
PY
cat $E/nvml-no-library.txt
