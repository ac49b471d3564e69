# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the vllm_sizing and vllm_cli_args filters."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.aiswarm.swarm.plugins.filter import vllm
from ansible_collections.aiswarm.swarm.plugins.filter.vllm import (
    GIB,
    FilterModule,
    parse_bytes,
    tensor_parallel_size,
    vllm_cli_args,
    vllm_sizing,
)

RTX_4090 = {"index": 0, "name": "NVIDIA GeForce RTX 4090", "memory_total_mb": 24564}
RTX_3080 = {"index": 1, "name": "NVIDIA GeForce RTX 3080", "memory_total_mb": 10240}

# Llama 3.1 shapes from their config.json; bf16 weights.
LLAMA_8B: dict[str, Any] = {
    "name": "llama-3.1-8b",
    "params_billion": 8.03,
    "dtype": "bf16",
    "num_layers": 32,
    "num_kv_heads": 8,
    "num_attention_heads": 32,
    "head_dim": 128,
    "max_position_embeddings": 131072,
}
LLAMA_70B: dict[str, Any] = {
    **LLAMA_8B,
    "name": "llama-3.1-70b",
    "params_billion": 70.6,
    "num_layers": 80,
    "num_attention_heads": 64,
}
# 2 x 32 layers x 8 KV heads x 128 dims x 2 bytes.
LLAMA_8B_KV_PER_TOKEN = 131072


def without(model: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in model.items() if name != key}


def fits(sizing: dict[str, Any], tokens: int) -> bool:
    return tokens * sizing["kv_cache_bytes_per_token"] <= sizing["kv_cache_budget_bytes"]


SHORT_8B = {**LLAMA_8B, "max_position_embeddings": 2048}
FP8_KV_8B = {**LLAMA_8B, "kv_dtype_bytes": 1}
TWO_4090 = [RTX_4090, RTX_4090]


# One 24 GB GPU: 0.9 x 24564 MiB = 21.6 GiB, minus 15.0 GiB of weights and a 1.5 GiB reserve
# (10 % of the weights) leaves 5.1 GiB, about 42 000 tokens at 128 KiB each.
# `by_memory`: the KV cache budget, not a context limit, decided max_model_len.
@pytest.mark.parametrize(
    ("gpus", "model", "options", "expected", "by_memory"),
    [
        pytest.param([], LLAMA_8B, {}, ("cpu", 1, 4096), False, id="no-gpu"),
        pytest.param([], SHORT_8B, {}, ("cpu", 1, 2048), False, id="no-gpu-short-model"),
        pytest.param([], LLAMA_70B, {}, ("cpu", 1, 3264), True, id="no-gpu-kv-space-clamps"),
        pytest.param([], LLAMA_8B, {"cpu_max_model_len": 6144}, ("cpu", 1, 6144), False, id="no-gpu-6k"),
        pytest.param([RTX_4090], LLAMA_8B, {}, ("cuda", 1, 42064), True, id="one-24gb-gpu-clamps-128k"),
        pytest.param([RTX_4090], FP8_KV_8B, {}, ("cuda", 1, 84144), True, id="fp8-kv-doubles"),
        pytest.param([RTX_4090], LLAMA_8B, {"max_context": 32768}, ("cuda", 1, 32768), False, id="ask-less"),
        pytest.param(TWO_4090, LLAMA_8B, {}, ("cuda", 2, 131072), False, id="two-gpus-full-128k"),
        pytest.param(
            TWO_4090, LLAMA_8B, {"max_context": 5000}, ("cuda", 2, 4992), False, id="block-rounding"
        ),
        pytest.param(
            [RTX_4090, RTX_3080], LLAMA_8B, {}, ("cuda", 2, 8528), True, id="mixed-sized-by-smallest"
        ),
        pytest.param(
            [RTX_4090] * 3, LLAMA_8B, {}, ("cuda", 2, 131072), False, id="three-gpus-eight-kv-heads"
        ),
    ],
)
def test_sizing(
    gpus: list[dict[str, Any]],
    model: dict[str, Any],
    options: dict[str, Any],
    expected: tuple[str, int, int],
    by_memory: bool,
) -> None:
    sizing = vllm_sizing(gpus, model, **options)

    assert (sizing["device"], sizing["tensor_parallel_size"], sizing["max_model_len"]) == expected
    assert sizing["max_model_len"] % 16 == 0
    assert sizing["enable_prefix_caching"] is True
    assert fits(sizing, sizing["max_model_len"])
    assert fits(sizing, sizing["max_model_len"] + 16) is not by_memory


def test_one_gpu_sizing_reports_its_budget() -> None:
    sizing = vllm_sizing([RTX_4090], LLAMA_8B)

    assert sizing["kv_cache_bytes_per_token"] == LLAMA_8B_KV_PER_TOKEN
    assert sizing["weights_bytes"] == 16_060_000_000
    assert sizing["gpu_memory_utilization"] == 0.9
    assert sizing["reserve_bytes_per_gpu"] == 1_606_000_000
    assert 5.1 * GIB < sizing["kv_cache_budget_bytes"] < 5.2 * GIB
    assert (sizing["kv_cache_dtype"], sizing["cpu_kvcache_space_gib"], sizing["env"]) == ("auto", None, {})


def test_small_models_reserve_at_least_one_gib_per_gpu() -> None:
    sizing = vllm_sizing([RTX_4090, RTX_4090], LLAMA_8B)

    assert sizing["reserve_bytes_per_gpu"] == GIB


def test_cpu_sizing_exports_the_kv_cache_space() -> None:
    sizing = vllm_sizing([], LLAMA_8B, cpu_kvcache_space_gib=4)

    assert sizing["gpu_memory_utilization"] is None
    assert sizing["kv_cache_budget_bytes"] == 4 * GIB
    assert sizing["env"] == {"VLLM_CPU_KVCACHE_SPACE": "4"}


def test_model_larger_than_vram_names_model_and_numbers() -> None:
    with pytest.raises(AnsibleFilterError) as error:
        vllm_sizing([RTX_4090] * 4, LLAMA_70B)

    assert str(error.value) == (
        "model 'llama-3.1-70b' needs 131.5 GiB of weights "
        "but 4 x 'NVIDIA GeForce RTX 4090' at 0.90 offer 86.4 GiB"
    )


def test_mixed_gpus_that_cannot_hold_the_shard_say_which_gpu_limits() -> None:
    with pytest.raises(
        AnsibleFilterError, match=r"2 x 'NVIDIA GeForce RTX 3080' \(the smallest of the GPUs\)"
    ):
        vllm_sizing([RTX_4090, RTX_3080], {**LLAMA_8B, "params_billion": 10.0})


@pytest.mark.parametrize(
    ("memory_total_mb", "tokens"),
    [
        pytest.param(19000, 2019, id="fewer-than-2048-tokens"),
        pytest.param(18000, 0, id="weights-fit-reserve-does-not"),
    ],
)
def test_too_little_kv_cache_fails_clearly(memory_total_mb: int, tokens: int) -> None:
    gpu = {"name": "NVIDIA Test 19G", "memory_total_mb": memory_total_mb}
    with pytest.raises(AnsibleFilterError) as error:
        vllm_sizing([gpu], LLAMA_8B)

    message = str(error.value)
    assert message.startswith(f"model 'llama-3.1-8b' leaves room for only {tokens} tokens of KV cache")
    assert "fewer than the minimum of 2048" in message
    assert "1.5 GiB reserve per GPU" in message


def test_a_short_context_request_below_the_minimum_is_honoured() -> None:
    assert vllm_sizing([RTX_4090], LLAMA_8B, max_context=1024)["max_model_len"] == 1024


def test_cpu_with_too_small_kv_space_fails() -> None:
    with pytest.raises(
        AnsibleFilterError, match=r"in cpu_kvcache_space_gib=1 on the CPU, fewer than the minimum"
    ):
        vllm_sizing([], {**LLAMA_70B, "num_layers": 400})


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (16_060_000_000, 16_060_000_000),
        (1.5e9, 1_500_000_000),
        ("16.06 GB", 16_060_000_000),
        ("15GiB", 15 * GIB),
        ("512 MiB", 512 * 1024**2),
        ("0.01tb", 10**10),
        ("1000", 1000),
    ],
)
def test_weights_in_odd_units(weights: Any, expected: int) -> None:
    assert parse_bytes(weights, "model.weights_bytes") == expected
    sizing = vllm_sizing([RTX_4090] * 8, {**without(LLAMA_8B, "params_billion"), "weights_bytes": weights})
    assert sizing["weights_bytes"] == expected


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("bfloat16", 16_060_000_000), ("FP32", 32_120_000_000), ("fp8", 8_030_000_000), ("awq", 4_015_000_000)],
)
def test_params_and_dtype_give_the_weight_size(dtype: str, expected: int) -> None:
    assert vllm.weights_bytes({**LLAMA_8B, "dtype": dtype}) == expected


@pytest.mark.parametrize(
    ("gpus", "model", "options", "message"),
    [
        pytest.param("none", LLAMA_8B, {}, "gpus must be a list of GPU facts", id="gpus-string"),
        pytest.param({"memory_total_mb": 1}, LLAMA_8B, {}, "gpus must be a list", id="gpus-dict"),
        pytest.param([24564], LLAMA_8B, {}, "gpus[0] must be a dict of GPU facts, got int", id="gpu-int"),
        pytest.param(
            [{"name": "x"}],
            LLAMA_8B,
            {},
            "gpus[0].memory_total_mb must be a positive number of MiB, got None",
            id="gpu-no-memory",
        ),
        pytest.param(
            [RTX_4090, {"memory_total_mb": "24 GB"}],
            LLAMA_8B,
            {},
            "gpus[1].memory_total_mb must be a positive number of MiB, got '24 GB'",
            id="gpu-memory-string",
        ),
        pytest.param(
            [], None, {}, "model must be a dict describing the model, got NoneType", id="model-none"
        ),
        pytest.param([], without(LLAMA_8B, "name"), {}, "model.name is required", id="no-name"),
        pytest.param([], without(LLAMA_8B, "num_layers"), {}, "model.num_layers is required", id="no-layers"),
        pytest.param([], without(LLAMA_8B, "head_dim"), {}, "model.head_dim is required", id="no-head-dim"),
        pytest.param(
            [],
            without(LLAMA_8B, "max_position_embeddings"),
            {},
            "model.max_position_embeddings is required",
            id="no-positions",
        ),
        pytest.param(
            [],
            without(LLAMA_8B, "params_billion"),
            {},
            "needs model.weights_bytes, or model.params_billion with model.dtype",
            id="no-weights",
        ),
        pytest.param([], without(LLAMA_8B, "dtype"), {}, "model.dtype is required", id="no-dtype"),
        pytest.param([], {**LLAMA_8B, "dtype": "bf17"}, {}, "model.dtype must be one of", id="bad-dtype"),
        pytest.param(
            [],
            {**LLAMA_8B, "weights_bytes": "16 GX"},
            {},
            "model.weights_bytes must be a positive number of bytes or a size",
            id="bad-unit",
        ),
        pytest.param(
            [],
            {**LLAMA_8B, "weights_bytes": -5},
            {},
            "model.weights_bytes must be a positive number, got -5",
            id="negative-weights",
        ),
        pytest.param(
            [],
            {**LLAMA_8B, "num_kv_heads": "8"},
            {},
            "model.num_kv_heads must be a positive integer, got '8'",
            id="heads-string",
        ),
        pytest.param(
            [],
            {**LLAMA_8B, "num_layers": True},
            {},
            "model.num_layers must be a positive integer, got True",
            id="layers-bool",
        ),
        pytest.param(
            [],
            {**LLAMA_8B, "num_attention_heads": 0},
            {},
            "model.num_attention_heads must be a positive integer",
            id="zero-heads",
        ),
        pytest.param(
            [],
            {**LLAMA_8B, "kv_dtype_bytes": 3},
            {},
            "model.kv_dtype_bytes must be 1, 2 or 4, got 3",
            id="kv-bytes",
        ),
        pytest.param(
            [],
            LLAMA_8B,
            {"gpu_memory_utilization": 90},
            "gpu_memory_utilization must be a number in (0, 1], got 90",
            id="util-percent",
        ),
        pytest.param(
            [],
            LLAMA_8B,
            {"max_context": "128k"},
            "max_context must be a positive integer, got '128k'",
            id="context-string",
        ),
        pytest.param(
            [],
            LLAMA_8B,
            {"reserve_fraction": 1.5},
            "reserve_fraction must be a number in [0, 1)",
            id="reserve-fraction",
        ),
        pytest.param(
            [],
            LLAMA_8B,
            {"cpu_kvcache_space_gib": 0},
            "cpu_kvcache_space_gib must be a positive integer",
            id="cpu-space",
        ),
    ],
)
def test_bad_input_names_the_key(gpus: Any, model: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError) as error:
        vllm_sizing(gpus, model, **options)

    assert message in str(error.value)


@pytest.mark.parametrize(
    ("gpu_count", "kv_heads", "attention_heads", "expected"),
    [
        (0, 8, None, 1),
        (1, 8, None, 1),
        (2, 8, None, 2),
        (3, 8, None, 2),
        (4, 8, None, 4),
        (6, 8, None, 4),
        (8, 8, None, 8),
        (16, 8, None, 8),
        (3, 5, None, 1),
        (5, 5, None, 5),
        (4, 4, 6, 2),
        (4, 8, 12, 4),
    ],
)
def test_tensor_parallel_size_divides_the_heads(
    gpu_count: int, kv_heads: int, attention_heads: int | None, expected: int
) -> None:
    assert tensor_parallel_size(gpu_count, kv_heads, attention_heads) == expected


def test_kv_heads_not_divisible_leaves_gpus_idle() -> None:
    model = {**LLAMA_8B, "num_kv_heads": 5, "num_attention_heads": 40}
    sizing = vllm_sizing([RTX_4090] * 4, model)

    assert (sizing["gpu_count"], sizing["tensor_parallel_size"]) == (4, 1)


def test_cli_args_for_a_gpu_sizing() -> None:
    sizing = vllm_sizing([RTX_4090, RTX_4090], LLAMA_8B, gpu_memory_utilization=0.85)

    assert vllm_cli_args(sizing, "/srv/models/llama-3.1-8b", "llama-3.1-8b", "0.0.0.0", 8000) == [
        "/srv/models/llama-3.1-8b",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--served-model-name",
        "llama-3.1-8b",
        "--max-model-len",
        "131072",
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.85",
        "--enable-prefix-caching",
    ]


def test_cli_args_for_cpu_omit_gpu_memory_utilization() -> None:
    args = vllm_cli_args(vllm_sizing([], LLAMA_8B), "/m", "tiny", "127.0.0.1", "8001")

    assert "--gpu-memory-utilization" not in args
    assert args[args.index("--port") + 1] == "8001"
    assert args[args.index("--max-model-len") + 1] == "4096"
    assert args[-1] == "--enable-prefix-caching"


def test_cli_args_select_fp8_kv_cache_and_append_extra() -> None:
    sizing = vllm_sizing([RTX_4090], {**LLAMA_8B, "kv_dtype_bytes": 1})
    args = vllm_cli_args(
        sizing, "/m", "m", "::", 8000, extra=["--max-num-seqs", "64", "--disable-log-requests"]
    )

    assert args[args.index("--kv-cache-dtype") + 1] == "fp8"
    assert args[-3:] == ["--max-num-seqs", "64", "--disable-log-requests"]


def test_cli_args_never_carry_an_api_key() -> None:
    args = vllm_cli_args(vllm_sizing([RTX_4090], LLAMA_8B), "/m", "m", "0.0.0.0", 8000)

    assert not any(re.search("api.key", arg, re.IGNORECASE) for arg in args)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            {"extra": ["--api-key", "sk-1"]},
            "must not contain --api-key: set the environment variable VLLM_API_KEY",
            id="api-key",
        ),
        pytest.param({"extra": ["--api-key=sk-1"]}, "must not contain --api-key", id="api-key-equals"),
        pytest.param(
            {"extra": ["--max-model-len=4096"]}, "extra must not repeat --max-model-len", id="own-flag"
        ),
        pytest.param({"extra": "--enforce-eager"}, "extra must be a list of strings", id="extra-string"),
        pytest.param({"extra": ["--max-num-seqs", 64]}, "extra must be a list of strings", id="extra-int"),
        pytest.param({"port": 0}, "port must be an integer from 1 to 65535, got 0", id="port-zero"),
        pytest.param({"port": "http"}, "port must be an integer from 1 to 65535, got 'http'", id="port-name"),
        pytest.param({"host": ""}, "host must be a non-empty string", id="host-empty"),
        pytest.param({"model_path": None}, "model_path must be a non-empty string, got None", id="no-path"),
        pytest.param({"served_model_name": 7}, "served_model_name must be a non-empty string", id="name-int"),
        pytest.param({"sizing": {"device": "cuda"}}, "sizing.max_model_len is missing", id="sizing-partial"),
        pytest.param({"sizing": [1]}, "sizing must be the dict vllm_sizing returns", id="sizing-list"),
    ],
)
def test_cli_args_bad_input_names_the_argument(call: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "sizing": vllm_sizing([RTX_4090], LLAMA_8B),
        "model_path": "/m",
        "served_model_name": "m",
        "host": "0.0.0.0",
        "port": 8000,
        **call,
    }
    with pytest.raises(AnsibleFilterError) as error:
        vllm_cli_args(**arguments)

    assert message in str(error.value)


def test_filter_module_exposes_both_filters() -> None:
    assert FilterModule().filters() == {"vllm_sizing": vllm_sizing, "vllm_cli_args": vllm_cli_args}
