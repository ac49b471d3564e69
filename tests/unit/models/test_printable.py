"""The steered tiny model can only generate printable ASCII, whatever it is fed.

A plain numpy forward pass of the llama architecture (RMS norms, causal multi-head attention,
SwiGLU feed-forward; no rotary embedding, which only changes the attention weights, and the
argument in `printable` holds for any attention weights) over the generator's own tensors.
"""

from __future__ import annotations

import numpy as np
import pytest

from aiswarm.models import printable
from aiswarm.models.tiny_gguf import TinyLlamaSpec, tensors

FORBIDDEN = sorted(set(range(printable.VOCAB_SIZE)) - set(printable.allowed_token_ids()))


def _rms(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * weight


def forward(t: dict[str, np.ndarray], spec: TinyLlamaSpec, tokens: list[int]) -> np.ndarray:
    """Logits of the next token after `tokens`."""
    x = t["token_embd.weight"][tokens].astype(np.float64)
    n, hd = len(tokens), spec.head_dim
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for layer in range(spec.layers):
        p = f"blk.{layer}"
        h = _rms(x, t[f"{p}.attn_norm.weight"])
        q, k, v = (h @ t[f"{p}.attn_{name}.weight"].T for name in ("q", "k", "v"))
        heads = []
        for i in range(spec.heads):
            part = slice(i * hd, (i + 1) * hd)
            scores = q[:, part] @ k[:, part].T / np.sqrt(hd) + mask
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            heads.append((weights / weights.sum(axis=1, keepdims=True)) @ v[:, part])
        x = x + np.concatenate(heads, axis=1) @ t[f"{p}.attn_output.weight"].T
        h = _rms(x, t[f"{p}.ffn_norm.weight"])
        gate = h @ t[f"{p}.ffn_gate.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ t[f"{p}.ffn_up.weight"].T)) @ t[f"{p}.ffn_down.weight"].T
    return _rms(x, t["output_norm.weight"])[-1] @ t["output.weight"].T


@pytest.mark.parametrize("seed", [0, 7])
def test_only_printable_tokens_are_reachable(seed: int) -> None:
    spec = TinyLlamaSpec(seed=seed)
    weights = tensors(spec)
    rng = np.random.default_rng(1234 + seed)
    allowed = printable.allowed_token_ids()
    chosen: set[int] = set()
    for length in (1, 2, 5, 17, 64):
        for _sample in range(10):
            # Any input: special tokens, control bytes and high bytes included.
            logits = forward(weights, spec, rng.integers(0, printable.VOCAB_SIZE, size=length).tolist())
            margin = logits[allowed].min() - logits[FORBIDDEN].max()
            assert margin > 100, f"a forbidden token is within {margin:.1f} nats of a printable one"
            chosen.add(int(np.argmax(logits)))
    # Not one token repeated for ever: greedy decoding already picks several different ones.
    assert len(chosen) >= 5, chosen


def test_every_printable_token_stays_possible() -> None:
    """Among printable tokens the distribution is spread, not collapsed onto one."""
    spec = TinyLlamaSpec(seed=7)
    logits = forward(tensors(spec), spec, [1, 72, 105])
    allowed = logits[printable.allowed_token_ids()]
    probs = np.exp(allowed - allowed.max())
    probs /= probs.sum()
    assert probs.max() < 0.9


def test_steer_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        printable.steer(np.zeros((4, 8)), np.zeros((4, 9)), np.zeros(8), [1])
    with pytest.raises(ValueError, match="allowed token ids"):
        printable.steer(np.zeros((4, 8)), np.zeros((4, 8)), np.zeros(8), [4])
