"""Native fused kernels for the CPU (cpu_kernels.c): built on first use, optional.

A layer's bias -> LayerNorm -> Mish (or SimNorm) is a chain of memory-bound ATen kernels;
on the CPU that chain costs as much as a third of the layer's matmul. The C file fuses it
into one pass per row, forward and backward. It is compiled once per machine with the
system C compiler into a cache directory, and its OpenMP threads are PyTorch's own (the
same libgomp). Without a compiler, or with TDMPC2_CPU_KERNELS=0, `library()` is None and the
layers keep their ATen path, with one warning when a build fails. CUDA never uses it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.c")
# -ffast-math without its finite-math assumption, so that NaN still propagates (the
# update skips non-finite losses), and without linking crtfastmath, which would switch
# the whole process to flush-to-zero.
COMPILE_FLAGS = [
    "-O3",
    "-march=native",
    "-fPIC",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fno-signed-zeros",
    "-fassociative-math",
    "-freciprocal-math",
]
_P, _I64 = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES = {  # name: (argument types, return type)
    "ln_act_forward": ([_P] * 6 + [_I64] * 4 + [ctypes.c_float], None),
    "ln_act_backward": ([_P] * 9 + [_I64] * 4 + [ctypes.c_int], None),
    "max_threads": ([], ctypes.c_int),
}


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tdmpc2" / "kernels"


def _cpu_model() -> str:
    """Part of the cache key: -march=native code must not run on another CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def _build(compiler: str, openmp: bool) -> Path:
    """Compiles SOURCE into the cache (atomically, so concurrent processes can race)."""
    torch_lib = Path(torch.__file__).parent / "lib"
    omp = ["-fopenmp"] if openmp else []
    # torch's own libgomp.so.1: the loader reuses the copy torch already has loaded.
    link = [f"-L{torch_lib}", f"-Wl,-rpath,{torch_lib}", *omp]
    key = hashlib.sha256(
        "\n".join(
            [SOURCE.read_text(), compiler, *COMPILE_FLAGS, *omp, *link, _cpu_model()]
        ).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, lib = Path(tmp) / "k.o", Path(tmp) / "k.so"
        for cmd in (
            [compiler, *COMPILE_FLAGS, *omp, "-c", str(SOURCE), "-o", str(obj)],
            [compiler, "-shared", str(obj), "-o", str(lib), *link],
        ):
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        os.replace(lib, target)
    return target


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (disabled, not on Linux/macOS, or no working compiler)."""
    if os.environ.get("TDMPC2_CPU_KERNELS", "1") == "0" or os.name != "posix":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    errors = []
    for openmp in (True, False):  # Apple's clang has no -fopenmp: single-threaded then
        try:
            lib = ctypes.CDLL(str(_build(compiler, openmp)))
            break
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", None) or str(err)
            errors.append(detail.strip().splitlines()[-1] if detail.strip() else repr(err))
    else:
        warnings.warn(
            f"could not build the fused CPU kernels ({'; '.join(errors)}); "
            "using ATen's LayerNorm and Mish (slower, same results)",
            stacklevel=2,
        )
        return None
    for name, (argtypes, restype) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    return lib


@torch.compiler.assume_constant_result
def _built() -> bool:
    """library() is not None; torch.compile takes it as a constant instead of tracing ctypes."""
    return library() is not None


def usable(x: torch.Tensor) -> bool:
    """Whether `ln_act` runs natively on x (fp32 on the CPU, kernels built).

    Under torch.compile the kernel enters the graph as an opaque operator.
    """
    return x.is_cpu and x.dtype == torch.float32 and _built()


def _groups(x: torch.Tensor, weight: torch.Tensor) -> tuple[int, int, int]:
    """(rows, cols, rows per weight row): x [..., cols], weight [cols] or [G, 1, cols]."""
    cols = x.shape[-1]
    rows = x.numel() // cols
    return rows, cols, rows // (weight.numel() // cols)


def _forward(x, lin_bias, weight, bias, eps, simplex, mean_rstd=None) -> torch.Tensor:
    rows, cols, group_rows = _groups(x, weight)
    y = torch.empty_like(x)
    library().ln_act_forward(
        x.data_ptr(),
        lin_bias.data_ptr(),
        weight.data_ptr(),
        bias.data_ptr(),
        y.data_ptr(),
        None if mean_rstd is None else mean_rstd.data_ptr(),
        rows,
        cols,
        group_rows,
        simplex,
        eps,
    )
    return y


class _LNAct(torch.autograd.Function):
    """Keeps the input and each row's mean and 1/std (plus the output for SimNorm): the
    backward pass recomputes the normalised row instead of storing it."""

    @staticmethod
    def forward(ctx, x, lin_bias, weight, bias, eps, simplex):
        mean_rstd = x.new_empty(x.numel() // x.shape[-1], 2)
        y = _forward(x, lin_bias, weight, bias, eps, simplex, mean_rstd)
        out = y if simplex else None
        ctx.save_for_backward(x, lin_bias, weight, bias, mean_rstd, out)
        ctx.simplex = simplex
        return y

    @staticmethod
    def backward(ctx, grad):
        x, lin_bias, weight, bias, mean_rstd, y = ctx.saved_tensors
        grad = grad.contiguous()
        rows, cols, group_rows = _groups(grad, weight)
        lib = library()
        threads = max(lib.max_threads(), 1)
        # The critics frozen inside the policy loss need only dx.
        params = any(ctx.needs_input_grad[1:4])
        partial = grad.new_zeros(threads, 3, weight.numel()) if params else None
        dx = torch.empty_like(grad)
        lib.ln_act_backward(
            grad.data_ptr(),
            None if y is None else y.data_ptr(),
            x.data_ptr(),
            lin_bias.data_ptr(),
            mean_rstd.data_ptr(),
            weight.data_ptr(),
            bias.data_ptr(),
            dx.data_ptr(),
            None if partial is None else partial.data_ptr(),
            rows,
            cols,
            group_rows,
            ctx.simplex,
            threads,
        )
        if not params:
            return dx, None, None, None, None, None
        dw, db, dlb = partial.sum(0).view(3, *weight.shape).unbind(0)
        return dx, dlb.view(lin_bias.shape), dw, db, None, None


@torch.library.custom_op("tdmpc2::ln_act", mutates_args=())
def _ln_act_op(
    x: torch.Tensor,
    lin_bias: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    simplex: int,
) -> torch.Tensor:
    """ln_act's inference pass as an operator that compiled graphs call (no autograd:
    only the planner, which runs without gradients, is compiled)."""
    return _forward(x, lin_bias, weight, bias, eps, simplex)


@_ln_act_op.register_fake
def _(x, lin_bias, weight, bias, eps, simplex):
    return torch.empty_like(x)


def ln_act(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float = 1e-5,
    lin_bias: torch.Tensor | None = None,
    simplex: int = 0,
) -> torch.Tensor:
    """act(layer_norm(x + lin_bias) * weight + bias) over the last dimension; needs `usable(x)`.

    act is Mish, or with `simplex` > 0 SimNorm over groups of that many columns. weight,
    bias and lin_bias are [cols], or [G, 1, cols] for x [G, rows, cols] (one row per
    group). `lin_bias` is the preceding linear layer's bias, left out of its matmul.
    """
    if lin_bias is None:
        lin_bias = torch.zeros_like(weight)
    tensors = x.contiguous(), lin_bias.contiguous(), weight.contiguous(), bias.contiguous()
    if torch.compiler.is_compiling():
        return _ln_act_op(*tensors, eps, simplex)
    if torch.is_grad_enabled() and (
        x.requires_grad or lin_bias.requires_grad or weight.requires_grad or bias.requires_grad
    ):
        return _LNAct.apply(*tensors, eps, simplex)
    return _forward(*tensors, eps, simplex)
