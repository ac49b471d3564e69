"""Steer a tiny random llama so that every token it can generate is visible text.

Random weights over a byte vocabulary emit control bytes, bytes of incomplete UTF-8 sequences
and end-of-sequence tokens, which detokenize to nothing: a lab engine that answers "200, no
text" on about half of its requests. `steer` edits three tensors of such a model so that only
printable ASCII (``!`` to ``~``) is reachable, for any input and any sampling temperature:

1. every token embedding gets a large constant ``ANCHOR`` in dimension 0 (the random weights
   elsewhere are about 0.02), so the residual stream keeps a positive, almost constant
   component there through the few layers;
2. the final RMS norm then maps dimension 0 to about ``sqrt(dim)`` whatever the input, and the
   other dimensions, which carry the token-dependent signal, are scaled up by ``SPREAD``;
3. in the output projection, column 0 is ``-PENALTY`` for every token that must not appear
   (special tokens, control bytes, space, bytes from 0x7F up) and 0 for printable ones.

A forbidden token's logit is therefore about ``PENALTY * sqrt(dim)`` below the printable ones
(over 200 nats for a 64-wide model): unreachable even at temperature 2. The text stays
gibberish and varied; the engine that produces it is real. Deterministic: no randomness here.

Used by `tiny_gguf` (llama.cpp) and `tiny_hf` (vLLM), which share the vocabulary layout below.
Only numpy is needed, so the file also works copied next to a generator run as a plain script.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
BYTE_OFFSET = len(SPECIAL_TOKENS)  # token id of byte b is BYTE_OFFSET + b
VOCAB_SIZE = BYTE_OFFSET + 256
PRINTABLE = range(0x21, 0x7F)  # "!" .. "~": visible on its own, one byte, valid UTF-8
ANCHOR = 1.0
SPREAD = 100.0
PENALTY = 40.0


def allowed_token_ids() -> list[int]:
    """Ids of the tokens the steered model may generate: the printable ASCII bytes."""
    return [BYTE_OFFSET + byte for byte in PRINTABLE]


def steer(embedding: np.ndarray, output: np.ndarray, output_norm: np.ndarray, allowed: Sequence[int]) -> None:
    """Edit the tensors in place: `embedding` and `output` are (vocab, dim), `output_norm` (dim,)."""
    vocab, dim = embedding.shape
    if output.shape != (vocab, dim) or output_norm.shape != (dim,):
        raise ValueError(
            f"steer: expected embedding and output of shape (vocab, dim) and output_norm (dim,), got "
            f"{embedding.shape}, {output.shape}, {output_norm.shape}"
        )
    if not allowed or min(allowed) < 0 or max(allowed) >= vocab:
        raise ValueError(f"steer: allowed token ids must be a non-empty subset of 0..{vocab - 1}")
    embedding[:, 0] = ANCHOR
    output_norm[0] = 1.0
    output_norm[1:] = SPREAD
    output[:, 0] = -PENALTY
    output[list(allowed), 0] = 0.0
