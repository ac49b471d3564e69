# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Size a vLLM server from GPU facts and turn the sizing into ``vllm serve`` arguments.

Filters:
  - ``vllm_sizing``: tensor parallelism, memory utilization and the longest context that fits.
  - ``vllm_cli_args``: the arguments that follow ``vllm serve``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

GIB = 1024**3
MIB = 1024**2
BLOCK_SIZE = 16

# Bytes per parameter for `params_billion` + `dtype` models.
DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "fp32": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
    "awq": 0.5,
    "gptq": 0.5,
}

# Decimal and binary units accepted in `weights_bytes` strings ("16.1 GB", "15 GiB").
_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": MIB,
    "gib": GIB,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

# Flags vllm_cli_args sets itself; `extra` may not repeat them.
_OWN_FLAGS = (
    "--host",
    "--port",
    "--served-model-name",
    "--max-model-len",
    "--tensor-parallel-size",
    "--gpu-memory-utilization",
    "--enable-prefix-caching",
    "--kv-cache-dtype",
)


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AnsibleFilterError(f"{where} must be a positive integer, got {value!r}")
    return value


def _positive_number(value: Any, where: str) -> float:
    if not _is_number(value) or value <= 0:
        raise AnsibleFilterError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def parse_bytes(value: Any, where: str) -> int:
    """Bytes from an integer or a string with a unit: ``"16.1 GB"`` (10^9) or ``"15 GiB"`` (2^30)."""
    if _is_number(value):
        return round(_positive_number(value, where))
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match and match.group(2).lower() in _UNITS:
            size = float(match.group(1)) * _UNITS[match.group(2).lower()]
            if size > 0:
                return round(size)
    raise AnsibleFilterError(
        f"{where} must be a positive number of bytes or a size such as '16.1 GB' or '15 GiB' "
        f"(units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got {value!r}"
    )


def _require(model: Mapping[str, Any], key: str) -> Any:
    if key not in model or model[key] is None:
        raise AnsibleFilterError(f"model.{key} is required; the model dict has keys {sorted(model)}")
    return model[key]


def _model_name(model: Any) -> str:
    if not isinstance(model, Mapping):
        raise AnsibleFilterError(f"model must be a dict describing the model, got {type(model).__name__}")
    name = _require(model, "name")
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError(f"model.name must be a non-empty string, got {name!r}")
    return name


def weights_bytes(model: Mapping[str, Any]) -> int:
    """``model.weights_bytes``, or ``params_billion`` x bytes per parameter of ``dtype``."""
    if model.get("weights_bytes") is not None:
        return parse_bytes(model["weights_bytes"], "model.weights_bytes")
    if model.get("params_billion") is None:
        raise AnsibleFilterError(
            f"model '{model['name']}' needs model.weights_bytes, or model.params_billion with model.dtype"
        )
    params = _positive_number(model["params_billion"], "model.params_billion")
    dtype = _require(model, "dtype")
    if not isinstance(dtype, str) or dtype.lower() not in DTYPE_BYTES:
        raise AnsibleFilterError(f"model.dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    return round(params * 1e9 * DTYPE_BYTES[dtype.lower()])


def kv_cache_bytes_per_token(model: Mapping[str, Any]) -> int:
    """K and V for every layer and KV head: 2 x layers x kv_heads x head_dim x kv_dtype_bytes.

    This is the formula for multi-head and grouped-query attention. Models with sliding-window
    layers need less; models with latent attention (MLA) need a different formula.
    """
    kv_dtype_bytes = model.get("kv_dtype_bytes", 2)
    if kv_dtype_bytes not in (1, 2, 4) or isinstance(kv_dtype_bytes, bool):
        raise AnsibleFilterError(f"model.kv_dtype_bytes must be 1, 2 or 4, got {kv_dtype_bytes!r}")
    layers = _positive_int(_require(model, "num_layers"), "model.num_layers")
    kv_heads = _positive_int(_require(model, "num_kv_heads"), "model.num_kv_heads")
    head_dim = _positive_int(_require(model, "head_dim"), "model.head_dim")
    return 2 * layers * kv_heads * head_dim * kv_dtype_bytes


def tensor_parallel_size(gpu_count: int, num_kv_heads: int, num_attention_heads: int | None = None) -> int:
    """The largest size <= ``gpu_count`` that divides ``num_kv_heads`` (and ``num_attention_heads``).

    vLLM shards attention heads evenly across tensor-parallel ranks, so the size must divide the
    head counts. With 3 GPUs and 8 KV heads this gives 2: one GPU stays idle rather than vLLM
    refusing to start. (vLLM can also replicate KV heads when the size is a multiple of the KV
    head count; this sizing does not rely on that.)
    """
    for size in range(max(gpu_count, 1), 0, -1):
        if num_kv_heads % size == 0 and (num_attention_heads is None or num_attention_heads % size == 0):
            return size
    return 1


def _gpu_memory_mib(gpus: Any) -> list[tuple[str, int]]:
    if not isinstance(gpus, Sequence) or isinstance(gpus, str):
        raise AnsibleFilterError(
            f"gpus must be a list of GPU facts (ansible_facts['aiswarm_gpus']), got {type(gpus).__name__}"
        )
    found = []
    for position, gpu in enumerate(gpus):
        if not isinstance(gpu, Mapping):
            raise AnsibleFilterError(
                f"gpus[{position}] must be a dict of GPU facts, got {type(gpu).__name__}"
            )
        total = gpu.get("memory_total_mb")
        if not _is_number(total) or total <= 0:
            raise AnsibleFilterError(
                f"gpus[{position}].memory_total_mb must be a positive number of MiB, got {total!r}"
            )
        found.append((str(gpu.get("name") or f"GPU {position}"), int(total)))
    return found


def _round_to_block(tokens: int) -> int:
    return tokens // BLOCK_SIZE * BLOCK_SIZE


def _check_fits(name: str, fits: int, cap: int, min_model_len: int, per_token: int, where: str) -> int:
    """The longest multiple of the block size that fits and is allowed, or a clear error."""
    max_model_len = _round_to_block(min(cap, fits))
    needed = min(min_model_len, _round_to_block(cap))
    if max_model_len < needed or max_model_len <= 0:
        raise AnsibleFilterError(
            f"model '{name}' leaves room for only {max(fits, 0)} tokens of KV cache "
            f"({per_token / 1024:.1f} KiB per token) {where}, fewer than the minimum of {needed}; "
            "use more or larger GPUs, a quantized model, model.kv_dtype_bytes=1 (fp8 KV cache) "
            "or a higher gpu_memory_utilization"
        )
    return max_model_len


def vllm_sizing(
    gpus: Any,
    model: Any,
    max_context: int = 131072,
    gpu_memory_utilization: float = 0.90,
    min_model_len: int = 2048,
    reserve_gib_per_gpu: float = 1.0,
    reserve_fraction: float = 0.10,
    cpu_max_model_len: int = 4096,
    cpu_kvcache_space_gib: int = 1,
) -> dict[str, Any]:
    """Size a vLLM server for ``model`` on ``gpus`` (``ansible_facts['aiswarm_gpus']``).

    ``model`` keys: ``name``; ``weights_bytes`` (bytes, or a string such as ``"16.1 GB"``) or
    ``params_billion`` + ``dtype``; ``num_layers``; ``num_kv_heads``; ``head_dim``;
    ``max_position_embeddings``; optional ``num_attention_heads`` and ``kv_dtype_bytes``
    (default 2; 1 selects an fp8 KV cache).

    With GPUs:
      - ``tensor_parallel_size`` is the GPU count, lowered to the largest size that divides the
        head counts (see ``tensor_parallel_size``).
      - Mixed GPUs are sized by the smallest one: tensor parallelism shards evenly, and CUDA's
        device order need not match NVML's, so any GPU may get a shard.
      - Per GPU, vLLM may use ``memory_total x gpu_memory_utilization``. From it come the weight
        shard (weights / tensor_parallel_size) and a reserve for activations, CUDA graphs and
        NCCL/cuBLAS buffers of ``max(reserve_gib_per_gpu GiB, reserve_fraction x weight shard)``.
        What is left on all ranks together is ``kv_cache_budget_bytes``.
      - ``max_model_len`` is the longest context, at most ``min(max_context,
        max_position_embeddings)`` and a multiple of the 16-token block size, whose KV cache
        for ONE full-length sequence fits in that budget.
    Without GPUs: device ``cpu``, tensor parallelism 1, a KV cache of ``cpu_kvcache_space_gib``
    (the role exports it as ``VLLM_CPU_KVCACHE_SPACE``) and ``max_model_len`` at most
    ``cpu_max_model_len``.

    Raises AnsibleFilterError when an input is malformed (naming the key), when the weights do
    not fit, or when fewer than ``min_model_len`` tokens of context fit.
    """
    name = _model_name(model)
    gpu_list = _gpu_memory_mib(gpus)
    weights = weights_bytes(model)
    per_token = kv_cache_bytes_per_token(model)
    position_limit = _positive_int(
        _require(model, "max_position_embeddings"), "model.max_position_embeddings"
    )
    attention_heads = model.get("num_attention_heads")
    if attention_heads is not None:
        _positive_int(attention_heads, "model.num_attention_heads")
    cap = min(_positive_int(max_context, "max_context"), position_limit)
    _positive_int(min_model_len, "min_model_len")
    if not _is_number(gpu_memory_utilization) or not 0 < gpu_memory_utilization <= 1:
        raise AnsibleFilterError(
            f"gpu_memory_utilization must be a number in (0, 1], got {gpu_memory_utilization!r}"
        )
    if not _is_number(reserve_fraction) or not 0 <= reserve_fraction < 1:
        raise AnsibleFilterError(f"reserve_fraction must be a number in [0, 1), got {reserve_fraction!r}")
    reserve_gib = _positive_number(reserve_gib_per_gpu, "reserve_gib_per_gpu")
    result: dict[str, Any] = {
        "model": name,
        "gpu_count": len(gpu_list),
        "weights_bytes": weights,
        "kv_cache_bytes_per_token": per_token,
        "kv_cache_dtype": "fp8" if model.get("kv_dtype_bytes", 2) == 1 else "auto",
        "enable_prefix_caching": True,
    }

    if not gpu_list:
        space = _positive_int(cpu_kvcache_space_gib, "cpu_kvcache_space_gib")
        budget = space * GIB
        cpu_cap = min(cap, _positive_int(cpu_max_model_len, "cpu_max_model_len"))
        where = f"in cpu_kvcache_space_gib={space} on the CPU"
        return {
            **result,
            "device": "cpu",
            "tensor_parallel_size": 1,
            "gpu_memory_utilization": None,
            "max_model_len": _check_fits(name, budget // per_token, cpu_cap, min_model_len, per_token, where),
            "kv_cache_budget_bytes": budget,
            "reserve_bytes_per_gpu": None,
            "cpu_kvcache_space_gib": space,
            "env": {"VLLM_CPU_KVCACHE_SPACE": str(space)},
        }

    tp = tensor_parallel_size(len(gpu_list), _require(model, "num_kv_heads"), attention_heads)
    smallest_name, smallest_mib = min(gpu_list, key=lambda gpu: gpu[1])
    usable_per_gpu = smallest_mib * MIB * gpu_memory_utilization
    shard = weights / tp
    reserve_per_gpu = max(reserve_gib * GIB, reserve_fraction * shard)
    mixed = " (the smallest of the GPUs)" if len({gpu[1] for gpu in gpu_list}) > 1 else ""
    offered = f"{tp} x '{smallest_name}'{mixed} at {gpu_memory_utilization:.2f}"
    if weights >= tp * usable_per_gpu:
        raise AnsibleFilterError(
            f"model '{name}' needs {_gib(weights)} of weights but {offered} offer {_gib(tp * usable_per_gpu)}"
        )
    budget = int(tp * (usable_per_gpu - shard - reserve_per_gpu))
    where = (
        f"in the {_gib(tp * usable_per_gpu)} that {offered} offer, after {_gib(weights)} of weights "
        f"and a {_gib(reserve_per_gpu)} reserve per GPU"
    )
    return {
        **result,
        "device": "cuda",
        "tensor_parallel_size": tp,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": _check_fits(name, budget // per_token, cap, min_model_len, per_token, where),
        "kv_cache_budget_bytes": max(budget, 0),
        "reserve_bytes_per_gpu": int(reserve_per_gpu),
        "cpu_kvcache_space_gib": None,
        "env": {},
    }


def vllm_cli_args(
    sizing: Any,
    model_path: Any,
    served_model_name: Any,
    host: Any,
    port: Any,
    extra: Any = None,
) -> list[str]:
    """The arguments after ``vllm serve`` for a ``vllm_sizing`` result.

    Gives the model path first, then ``--host``, ``--port``, ``--served-model-name``,
    ``--max-model-len``, ``--tensor-parallel-size``, ``--gpu-memory-utilization`` (GPU only),
    ``--kv-cache-dtype fp8`` (only for a 1-byte KV cache), ``--enable-prefix-caching`` and then
    ``extra`` (a list of strings). An API key is never an argument, where ``ps`` would show it:
    pass it as the environment variable ``VLLM_API_KEY``.
    """
    if not isinstance(sizing, Mapping):
        raise AnsibleFilterError(f"sizing must be the dict vllm_sizing returns, got {type(sizing).__name__}")
    for key in ("device", "max_model_len", "tensor_parallel_size"):
        if key not in sizing:
            raise AnsibleFilterError(f"sizing.{key} is missing; pass the dict vllm_sizing returns")
    for value, label in (
        (model_path, "model_path"),
        (served_model_name, "served_model_name"),
        (host, "host"),
    ):
        if not isinstance(value, str) or not value:
            raise AnsibleFilterError(f"{label} must be a non-empty string, got {value!r}")
    port_number = int(port) if isinstance(port, str) and port.isdigit() else port
    if isinstance(port_number, bool) or not isinstance(port_number, int) or not 0 < port_number < 65536:
        raise AnsibleFilterError(f"port must be an integer from 1 to 65535, got {port!r}")
    extra_args = [] if extra is None else extra
    if not isinstance(extra_args, list) or not all(isinstance(arg, str) for arg in extra_args):
        raise AnsibleFilterError(f"extra must be a list of strings, got {extra!r}")
    for arg in extra_args:
        flag = arg.split("=", 1)[0]
        if flag == "--api-key":
            raise AnsibleFilterError(
                "extra must not contain --api-key: set the environment variable VLLM_API_KEY instead"
            )
        if flag in _OWN_FLAGS:
            raise AnsibleFilterError(f"extra must not repeat {flag}: vllm_cli_args sets it from the sizing")

    args = [
        model_path,
        "--host",
        host,
        "--port",
        str(port_number),
        "--served-model-name",
        served_model_name,
        "--max-model-len",
        str(sizing["max_model_len"]),
        "--tensor-parallel-size",
        str(sizing["tensor_parallel_size"]),
    ]
    if sizing["device"] != "cpu":
        args += ["--gpu-memory-utilization", f"{sizing['gpu_memory_utilization']:g}"]
    if sizing.get("kv_cache_dtype", "auto") != "auto":
        args += ["--kv-cache-dtype", str(sizing["kv_cache_dtype"])]
    if sizing.get("enable_prefix_caching", True):
        args.append("--enable-prefix-caching")
    return args + extra_args


class FilterModule:
    """vLLM sizing filters."""

    def filters(self) -> dict[str, Any]:
        return {"vllm_sizing": vllm_sizing, "vllm_cli_args": vllm_cli_args}
