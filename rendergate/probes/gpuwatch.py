"""What NVML sees on the GPUs while a workload runs: the evidence that it used a GPU at all.

Imported by probes that run a workload which may silently fall back to the CPU.
"""
import threading
import time

import pynvml


class GpuWatch(threading.Thread):
    """Samples NVML every 50 ms until evidence() is asked: compute processes and memory in use."""

    def __init__(self):
        super().__init__(daemon=True)
        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self.baseline_pids, self.baseline_used = self.sample()
        self.seen_pids, self.peak_used = set(), self.baseline_used
        self.running = True

    def sample(self):
        pids, used = set(), 0
        for handle in self.handles:
            pids |= {p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
            used += self.nvml.nvmlDeviceGetMemoryInfo(handle).used
        return pids, used

    def run(self):
        while self.running:
            pids, used = self.sample()
            self.seen_pids |= pids
            self.peak_used = max(self.peak_used, used)
            time.sleep(0.05)

    def evidence(self):
        self.running = False
        self.join()
        return {"new_compute_processes": len(self.seen_pids - self.baseline_pids),
                "memory_rise_mib": round((self.peak_used - self.baseline_used) / 2**20, 1)}
