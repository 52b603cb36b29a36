"""The machine a benchmark ran on: CPU model, instruction sets that matter, cores, GPU, runtime versions."""

from __future__ import annotations

import os
import platform
import time

from ecgtool.core.errors import BadInput




def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


#: the instruction-set extensions that decide INT8 forms and speed here (benchmarks print them beside every figure)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")


def cpu_flags() -> str:
    """The ISA_FLAGS this CPU's /proc/cpuinfo lists, sorted and space-separated ("" where it cannot be read)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("flags"):
                return " ".join(sorted(set(line.split(":", 1)[1].split()) & set(ISA_FLAGS)))
    except OSError:
        pass
    return ""


def machine_info(threads: int | None = None, device: str = "cpu") -> dict:
    """CPU model, the instruction-set features that matter, cores, threads, GPU and runtime versions."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name") and model in ("unknown", platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    has = lambda f: "present" if f in flags else "absent"  # noqa: E731
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        pass
    tensorrt = _version("tensorrt")
    return {
        "cpu": model, "avx2": has("avx2"), "avx512f": has("avx512f"), "avx512_vnni": has("avx512_vnni"),
        "avx512_bf16": has("avx512_bf16"), "amx": has("amx_tile"), "cores": os.cpu_count(), "threads": threads,
        "device": device, "gpu": gpu, "python": platform.python_version(), "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"), "openvino": _version("openvino"), "tensorrt": tensorrt,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def tensorrt_skip_reason() -> str:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "skipped: TensorRT not installed"
    import torch

    if not torch.cuda.is_available():
        return "skipped: no CUDA device"
    return "skipped: engine not built (run the trtexec-*.sh beside it)"


def machine_lines(machine: dict) -> list[str]:
    """The header block: machine, instruction sets, threads, GPU, versions."""
    load = ""
    if machine.get("load_start") is not None:
        load = f"; load average {machine['load_start']} at start, {machine.get('load_end')} at end"
    return [
        f"CPU: {machine['cpu']} ({machine['cores']} cores visible, {machine['threads']} threads used per backend{load})",
        f"ISA: AVX2 {machine['avx2']}, AVX-512 {machine['avx512f']}, AVX-512 VNNI {machine['avx512_vnni']}, "
        f"AVX512-BF16 {machine['avx512_bf16']}, AMX {machine['amx']}",
        f"GPU: {machine['gpu']} (device used: {machine['device']})",
        f"Versions: python {machine['python']}, torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
        f"openvino {machine['openvino']}, tensorrt {machine['tensorrt']}",
    ]


# --- the INT8 target of this CPU (compress.targets maps it to a QDQ form; runtime warns on a mismatch) ---

def cpuid_features() -> dict[str, bool]:
    """CPU features as this process's CPUID reports them (numpy's dispatcher: AVX2, AVX512VNNI, ASIMDDP, ...)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return {k: bool(v) for k, v in __cpu_features__.items()}


def proc_flags() -> set[str]:
    """The flags line of /proc/cpuinfo (the host's view; empty if unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def detect_target(cpu: dict[str, bool] | None = None, flags: set[str] | None = None, machine: str | None = None) -> str:
    """The INT8 target of this machine: x86-vnni, x86-avx2 (any x86 without VNNI) or arm64.

    CPUID decides. /proc/cpuinfo only adds AVX-VNNI (which numpy does not report), and only when it agrees
    with CPUID on AVX2 and AVX-512 VNNI (else it is the host's file seen through an emulator).
    """
    cpu = cpuid_features() if cpu is None else cpu
    flags = proc_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        raise BadInput(f"--target auto: no INT8 target known for CPU architecture {machine!r} "
                       "(choose one with --target)")
    agrees = ("avx2" in flags) == cpu.get("AVX2", False) and ("avx512_vnni" in flags) == cpu.get("AVX512VNNI", False)
    vnni = cpu.get("AVX512VNNI", False) or (agrees and cpu.get("AVX2", False) and "avx_vnni" in flags)
    return "x86-vnni" if vnni else "x86-avx2"


#: environment variable that overrides threads "auto" (the tests set it to 1)
THREADS_ENV = "ECGTOOL_THREADS"


#: how long `busy_cores` watches /proc/stat, and how long a measurement is reused within one process
BUSY_SAMPLE_S = 0.5
BUSY_REUSE_S = 10.0
_busy_seen: list[tuple[float, float]] = []  # (time.monotonic() when measured, busy cores)


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat's first line; None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def busy_cores(sample_s: float = BUSY_SAMPLE_S) -> float | None:
    """Cores busy now (other processes' CPU time over `sample_s` seconds of /proc/stat, this process asleep),
    or None where /proc/stat cannot be read. Unlike the 1-minute load average it does not lag: right after
    `make test` ends the load average still reads ~1.5 on 2 idle cores for a minute."""
    if _busy_seen and time.monotonic() - _busy_seen[-1][0] < BUSY_REUSE_S:
        return _busy_seen[-1][1]
    a = _cpu_jiffies()
    if a is None:
        return None
    time.sleep(sample_s)
    b = _cpu_jiffies()
    if b is None or b[1] <= a[1]:
        return None
    busy = (os.cpu_count() or 1) * (b[0] - a[0]) / (b[1] - a[1])
    _busy_seen[:] = [(time.monotonic(), busy)]
    return busy


#: what "auto" means, for every --threads help text
THREADS_AUTO_HELP = "all cores when under half of them are busy now, else 1"


def resolve_threads(threads: int | str | None = "auto") -> tuple[int, str]:
    """(threads, why): an int is kept; "auto"/None -> $ECGTOOL_THREADS if set, else every core when under half
    the cores are busy now (`busy_cores`; the 1-minute load average where /proc/stat cannot be read), else 1
    (PyTorch's OpenMP threads stall on a busy shared machine: a 2-thread forward pass went from 2 ms to ~500 ms
    while another process held a core)."""
    if threads not in (None, "auto"):
        try:
            n = int(threads)
        except (TypeError, ValueError):
            raise BadInput(f"threads: {threads!r} is neither a number nor auto") from None
        if n < 1:
            raise BadInput(f"threads: {n} must be at least 1 (or auto)")
        return n, "as given"
    env = os.environ.get(THREADS_ENV)
    if env:
        return resolve_threads(env)[0], f"${THREADS_ENV}"
    cores = os.cpu_count() or 1
    try:
        load = f"load average {os.getloadavg()[0]:.2f}"
    except OSError:
        load = "load average unknown"
    busy = busy_cores()
    if busy is None:
        if load.endswith("unknown"):
            return 1, "auto: load unknown"
        value, what = float(load.split()[-1]), load
    else:
        value, what = busy, f"{busy:.2f} cores busy now ({load})"
    if value < 0.5 * cores:
        return cores, f"auto: machine quiet, {what} < {0.5 * cores:g} on {cores} cores"
    return 1, f"auto: machine busy, {what} >= {0.5 * cores:g} on {cores} cores"
