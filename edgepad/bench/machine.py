"""The machine under the device benchmark: CPU FP32 peak and clock, BLAS ceiling, process / machine resources
(CPU, RSS, GPU via nvidia-smi, Jetson tegrastats power and temperatures), device and package information.
"""
from __future__ import annotations

import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgepad.doctor import collect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CpuPeak:
    """Theoretical FP32 peak of this CPU: ``cores × GHz × flop_per_cycle`` (GFLOP/s).

    ``flop_per_cycle`` per core = FMA units × SIMD lanes (FP32) × 2 (an FMA is a multiply and an add).
    """

    model: str
    cores: int
    ghz: float
    ghz_source: str
    isa: str
    fma_units: int
    lanes: int
    flop_per_cycle: int
    gflops: float
    formula: str
    note: str = ""


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            info.setdefault(k.strip().lower(), v.strip())
    return info


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_peak(override_gflops: float | None = None, *, measure_clock: bool = True) -> CpuPeak:
    """Estimate the FP32 peak of the CPUs this process may use.

    Rules (per core, FP32): AVX-512 + FMA: 2 FMA units × 16 lanes (Intel Xeon Scalable, AMD Zen 5; AMD Zen 4
    executes 512-bit FMAs on 256-bit units: 2 × 8); AVX2 + FMA: 2 × 8; AVX: 8-lane add + 8-lane multiply (counted
    as 1 × 8 × 2); SSE2: 1 × 4 × 2; aarch64 NEON: 2 × 4 (Cortex-A78AE of Orin; A57: 1 × 4). Clock: cpufreq
    ``cpuinfo_max_freq`` when present, else ``cpu MHz`` of /proc/cpuinfo (under a hypervisor usually the nominal
    clock; a boost clock makes the true peak higher), or the clock measured by :func:`measure_clock_ghz` when that is
    higher (virtual machines report the nominal clock).

    Args:
        override_gflops: use this peak instead of the estimate (``--peak-gflops``).
        measure_clock: allow the measured clock where cpufreq is absent.
    """
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    model = info.get("model name") or info.get("hardware") or platform.processor() or platform.machine()
    cores = _cores()
    ghz, src = 0.0, "unknown"
    try:
        khz = float(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text().strip())
        ghz, src = khz / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        measured = measure_clock_ghz() if measure_clock else None
        nominal = 0.0
        try:
            nominal = float(info.get("cpu mhz", "0")) / 1000.0
        except ValueError:
            pass
        if measured and measured > nominal:
            ghz, src = measured, (f"measured (dependent-add loop; /proc/cpuinfo says {nominal:.3f} GHz, the "
                                  "nominal clock a hypervisor reports)")
        else:
            ghz, src = nominal, "/proc/cpuinfo cpu MHz (may be the nominal clock: the peak is then a lower bound)"
    vendor = info.get("vendor_id", "")
    family = int(info.get("cpu family", "0") or 0) if (info.get("cpu family") or "0").isdigit() else 0
    machine = platform.machine().lower()
    note = ""
    if machine in ("aarch64", "arm64"):
        part = info.get("cpu part", "")
        if part == "0xd07":  # Cortex-A57 (Jetson Nano/TX2)
            isa, units, lanes = "neon (Cortex-A57)", 1, 4
        else:
            isa, units, lanes = "neon", 2, 4
    elif "avx512f" in flags and "fma" in flags:
        isa, lanes = "avx512+fma", 16
        units = 2
        if vendor == "AuthenticAMD" and family == 25:
            isa, lanes, note = "avx512+fma (Zen 4: 256-bit datapath)", 8, "Zen 4 splits 512-bit FMAs"
    elif "avx2" in flags and "fma" in flags:
        isa, units, lanes = "avx2+fma", 2, 8
    elif "avx" in flags:
        isa, units, lanes = "avx", 1, 8
    else:
        isa, units, lanes = "sse2", 1, 4
    fpc = units * lanes * 2
    ghz = round(ghz, 3)
    gflops = cores * ghz * fpc
    formula = f"{cores} cores × {ghz:.3f} GHz × ({units} FMA × {lanes} lanes × 2) = {gflops:.1f} GFLOP/s"
    if override_gflops:
        gflops = float(override_gflops)
        formula = f"given with --peak-gflops: {gflops:.1f} GFLOP/s (estimate was {formula})"
    return CpuPeak(model, cores, ghz, src, isa, units, lanes, fpc, float(gflops), formula, note)


_CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b; long x = 0, n = 400000000L;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) { __asm__ volatile("" : "+r"(x)); x += 1; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.6f %ld\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9, x);
    return 0;
}
"""
_clock_cache: list[float | None] = []


def measure_clock_ghz() -> float | None:
    """Core clock (GHz) from a loop of dependent 1-cycle integer adds compiled with the system C compiler.

    One iteration costs one cycle (the add chain; the loop counter and branch run beside it on any out-of-order
    core), so iterations / second is the clock under load. None without a C compiler (e.g. a bare device).
    Best of 3 runs of 4·10^8 iterations; cached per process.
    """
    if _clock_cache:
        return _clock_cache[0]
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    ghz = None
    if cc:
        with tempfile.TemporaryDirectory(prefix="edgepad-clock-") as tmp:
            src, exe = Path(tmp) / "clock.c", Path(tmp) / "clock"
            src.write_text(_CLOCK_C)
            try:
                r = subprocess.run([cc, "-O1", str(src), "-o", str(exe)], capture_output=True, timeout=60)
                if r.returncode == 0:
                    best = math.inf
                    for _ in range(3):
                        out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout.split()
                        best = min(best, float(out[0]))
                    ghz = 4e8 / best / 1e9 if best > 0 else None
            except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
                log.info("clock measurement failed: %s", exc)
    _clock_cache.append(ghz)
    return ghz


def blas_gflops(n: int = 1024, repeats: int = 3) -> float:
    """Achieved FP32 GFLOP/s of a numpy ``n×n @ n×n`` (the BLAS the process links): a practical ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def process_cpu_s() -> float:
    """User + system CPU seconds of this process (all threads), from /proc/self/stat or resource."""
    stat = _read("/proc/self/stat")
    if stat:
        fields = stat[stat.rindex(")") + 2:].split()
        tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        return (int(fields[11]) + int(fields[12])) / float(tck)
    t = os.times()
    return t.user + t.system


def system_cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat (None elsewhere)."""
    text = _read("/proc/stat")
    if not text:
        return None
    vals = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def rss_mib() -> float | None:
    """Resident set size of this process (MiB)."""
    text = _read("/proc/self/statm")
    if text:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2 ** 20 if sys.platform == "darwin" else r / 1024
    except (ImportError, OSError):
        return None


def peak_rss_mib() -> float | None:
    """Peak resident set size of this process (MiB), from ``getrusage``."""
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2 ** 20 if sys.platform == "darwin" else r / 1024
    except (ImportError, OSError):
        return None


def thermal_zones() -> dict[str, float]:
    """``{zone type: °C}`` from /sys/class/thermal (empty where there are none)."""
    out: dict[str, float] = {}
    for z in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        t, kind = _read(z / "temp"), _read(z / "type")
        if t is None:
            continue
        try:
            out[(kind or z.name).strip() or z.name] = int(t.strip()) / 1000.0
        except ValueError:
            continue
    return out


def _run_tool(argv: Sequence[str], timeout_s: float = 10.0) -> dict[str, Any]:
    if shutil.which(argv[0]) is None:
        return {"available": False}
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": True, "error": str(exc)}
    return {"available": True, "rc": r.returncode, "output": (r.stdout + r.stderr).strip()[:4000]}


def nvidia_smi_sample() -> dict[str, float] | None:
    """GPU utilisation (%) and memory used/total (MiB) of GPU 0 via nvidia-smi; None where it is absent."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used,memory.total",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
        util, used, total = (float(v) for v in r.stdout.splitlines()[0].split(","))
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return {"gpu_util_pct": util, "gpu_mem_used_mib": used, "gpu_mem_total_mib": total}


_TEGRA_POWER = re.compile(r"\b([A-Za-z0-9_]+) (\d+)mW/(\d+)mW")
_TEGRA_TEMP = re.compile(r"\b([A-Za-z0-9_]+)@(-?[\d.]+)C")
_TEGRA_GPU = re.compile(r"GR3D_FREQ (\d+)%")
_TEGRA_RAM = re.compile(r"RAM (\d+)/(\d+)MB")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line → ``{"gpu_util_pct", "ram_used_mib", "power_mw": {rail: mW}, "temp_c": {zone: °C}}``."""
    out: dict[str, Any] = {}
    m = _TEGRA_GPU.search(line)
    if m:
        out["gpu_util_pct"] = float(m.group(1))
    m = _TEGRA_RAM.search(line)
    if m:
        out["ram_used_mib"], out["ram_total_mib"] = float(m.group(1)), float(m.group(2))
    power = {k: float(v) for k, v, _ in _TEGRA_POWER.findall(line)}
    if power:
        out["power_mw"] = power
    temps = {k: float(v) for k, v in _TEGRA_TEMP.findall(line)}
    if temps:
        out["temp_c"] = temps
    return out


class ResourceMonitor:
    """Samples RSS, machine CPU load, GPU (nvidia-smi / tegrastats) and temperatures in a background thread.

    Args:
        interval_s: sampling period.
        gpu: sample nvidia-smi / tegrastats when the tools exist.
    """

    def __init__(self, interval_s: float = 0.5, gpu: bool = True) -> None:
        self.interval_s = float(interval_s)
        self.samples: list[dict[str, Any]] = []
        self._gpu = gpu and shutil.which("nvidia-smi") is not None
        self._tegra_cmd = shutil.which("tegrastats") if gpu else None
        self._tegra: subprocess.Popen | None = None
        self._tegra_last: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._sys0: tuple[int, int] | None = None

    def __enter__(self) -> "ResourceMonitor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._t0, self._cpu0, self._sys0 = time.perf_counter(), process_cpu_s(), system_cpu_ticks()
        if self._tegra_cmd:
            try:
                self._tegra = subprocess.Popen([self._tegra_cmd, "--interval", str(int(self.interval_s * 1000))],
                                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                threading.Thread(target=self._read_tegra, daemon=True, name="bench-tegrastats").start()
            except OSError as exc:
                log.info("tegrastats not usable: %s", exc)
                self._tegra = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-resources")
        self._thread.start()

    def _read_tegra(self) -> None:
        proc = self._tegra
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            self._tegra_last = parse_tegrastats(line)

    def _sample(self) -> dict[str, Any]:
        s: dict[str, Any] = {"t_s": time.perf_counter() - self._t0, "rss_mib": rss_mib(),
                             "cpu_s": process_cpu_s()}
        ticks = system_cpu_ticks()
        if ticks is not None:
            s["sys_ticks"] = ticks
        if self._gpu:
            g = nvidia_smi_sample()
            if g:
                s.update(g)
        if self._tegra_last:
            s["tegra"] = dict(self._tegra_last)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self._sample())

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        self.samples.append(self._sample())
        if self._tegra is not None:
            self._tegra.terminate()
            try:
                self._tegra.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._tegra.kill()
            self._tegra = None

    def summary(self) -> dict[str, Any]:
        """CPU utilisation (process, in cores and % of the usable cores; machine-wide %), RSS, GPU and power."""
        if not self.samples:
            return {}
        last = self.samples[-1]
        wall = max(last["t_s"], 1e-9)
        cores = _cores()
        cpu_s = last["cpu_s"] - self._cpu0
        out: dict[str, Any] = {"wall_s": wall, "process_cpu_s": cpu_s, "process_cpu_cores": cpu_s / wall,
                               "process_cpu_pct_of_machine": 100.0 * cpu_s / wall / cores, "cores": cores}
        if self._sys0 is not None and "sys_ticks" in last:
            busy = last["sys_ticks"][0] - self._sys0[0]
            total = max(1, last["sys_ticks"][1] - self._sys0[1])
            out["machine_cpu_busy_pct"] = 100.0 * busy / total
        rss = [s["rss_mib"] for s in self.samples if s.get("rss_mib") is not None]
        if rss:
            out["rss_mib"] = {"mean": float(np.mean(rss)), "max": float(np.max(rss)), "last": float(rss[-1])}
        out["peak_rss_mib"] = peak_rss_mib()
        util = [s["gpu_util_pct"] for s in self.samples if "gpu_util_pct" in s]
        mem = [s["gpu_mem_used_mib"] for s in self.samples if "gpu_mem_used_mib" in s]
        if util:
            out["gpu_util_pct"] = {"mean": float(np.mean(util)), "max": float(np.max(util))}
        if mem:
            out["gpu_mem_used_mib"] = {"mean": float(np.mean(mem)), "max": float(np.max(mem))}
        tegra = [s["tegra"] for s in self.samples if "tegra" in s]
        if tegra:
            gu = [t["gpu_util_pct"] for t in tegra if "gpu_util_pct" in t]
            if gu:
                out["gpu_util_pct"] = {"mean": float(np.mean(gu)), "max": float(np.max(gu)), "source": "tegrastats"}
            rails: dict[str, list[float]] = {}
            for t in tegra:
                for k, v in t.get("power_mw", {}).items():
                    rails.setdefault(k, []).append(v)
            if rails:
                out["power_mw"] = {k: {"mean": float(np.mean(v)), "max": float(np.max(v))} for k, v in rails.items()}
            temps: dict[str, list[float]] = {}
            for t in tegra:
                for k, v in t.get("temp_c", {}).items():
                    temps.setdefault(k, []).append(v)
            if temps:
                out["tegra_temp_c"] = {k: {"mean": float(np.mean(v)), "max": float(np.max(v))}
                                       for k, v in temps.items()}
        if not (util or mem or tegra):
            out["gpu"] = "not measured: no nvidia-smi or tegrastats here"
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                out["torch_cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        except Exception:  # noqa: BLE001 - optional
            pass
        return out


def device_info(peak: CpuPeak | None = None) -> dict[str, Any]:
    """Host, CPU (with the peak estimate), GPU and, on a Jetson, power mode, clocks and temperatures."""
    peak = peak or cpu_peak()
    out: dict[str, Any] = {"hostname": platform.node(), "platform": platform.platform(),
                           "machine": platform.machine(), "cpu": asdict(peak), "thermal_c": thermal_zones()}
    smi = _run_tool(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                     "--format=csv,noheader"])
    out["nvidia_smi"] = smi.get("output") if smi.get("available") else "not available"
    tegra = _read("/etc/nv_tegra_release")
    model = _read("/proc/device-tree/model")
    jetson = tegra is not None or (model is not None and "jetson" in model.lower())
    out["jetson"] = jetson
    if jetson:
        out["jetson_release"] = (tegra or "").splitlines()[0] if tegra else None
        out["jetson_model"] = (model or "").strip("\x00 \n")
        q = _run_tool(["nvpmodel", "-q"])
        out["nvpmodel"] = q.get("output") if q.get("available") else "nvpmodel not found"
        c = _run_tool(["jetson_clocks", "--show"])
        out["jetson_clocks"] = c.get("output") if c.get("available") else "jetson_clocks not found"
    return out


def versions() -> dict[str, Any]:
    """``edgepad.doctor.collect()`` (package versions, devices, usable commands); never raises."""
    try:
        doc = collect()
        doc["commands"] = {k: bool(v[0]) for k, v in doc.get("commands", {}).items()}
        return doc
    except Exception as exc:  # noqa: BLE001 - versions are informational
        return {"error": f"{type(exc).__name__}: {exc}", "python": platform.python_version(),
                "numpy": np.__version__}
