"""Write a tiny llama-architecture GGUF with random weights: a real model file for a lab without a hub.

The model has a byte-level vocabulary (`<unk>`, `<s>`, `</s>` and `<0x00>`..`<0xFF>`), the
"llama" (SentencePiece) tokenizer model and a ChatML chat template, so llama.cpp loads it and
streams OpenAI-compatible chat completions from it. Its weights are steered (see `printable`)
so that it only ever generates printable ASCII: every answer carries visible text from its
first token, and it never ends early. The text is gibberish; the engine is real.

Output is a pure function of the spec: the same seed and sizes give the same bytes, so a
deployment can guard generation with `creates:` and stay idempotent. The file is written to a
temporary name beside the target and renamed into place only when complete.

Usage: `python -m aiswarm.models.tiny_gguf OUT.gguf [--seed N] [--layers N] [--dim N] ...`
(the file also runs as a plain script with `printable.py` beside it, which is how the
model_manager role calls it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

try:
    from aiswarm.models.printable import SPECIAL_TOKENS, VOCAB_SIZE, allowed_token_ids, steer
except ImportError:  # run as a plain script, with printable.py copied beside it
    from printable import SPECIAL_TOKENS, VOCAB_SIZE, allowed_token_ids, steer  # type: ignore[no-redef]

ARCHITECTURE = "llama"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Sizes and seed of the generated model; `validate` names the field that is wrong."""

    name: str = "aiswarm-tiny-llama"
    seed: int = 0
    layers: int = 2
    dim: int = 64
    heads: int = 4
    kv_heads: int = 4
    ffn_dim: int = 128
    context_length: int = 2048

    def validate(self) -> None:
        positive = ("layers", "dim", "heads", "kv_heads", "ffn_dim", "context_length")
        for field in positive:
            value = getattr(self, field)
            if value < 1:
                raise ValueError(f"{field}: expected a positive integer, got {value}")
        if self.seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {self.seed}")
        if self.dim % self.heads:
            raise ValueError(f"dim: expected a multiple of heads ({self.heads}), got {self.dim}")
        if (self.dim // self.heads) % 2:
            raise ValueError(f"dim/heads: RoPE needs an even head size, got {self.dim // self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads: expected a divisor of heads ({self.heads}), got {self.kv_heads}")
        if not self.name.strip():
            raise ValueError("name: expected a non-empty model name")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the byte-level vocabulary."""
    tokens = [*SPECIAL_TOKENS, *(f"<0x{byte:02X}>" for byte in range(256))]
    scores = [0.0] * len(tokens)
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    types += [int(TokenType.BYTE)] * 256
    return tokens, scores, types


def tensors(spec: TinyLlamaSpec) -> dict[str, np.ndarray]:
    """The llama tensors by GGUF name, float32, shaped (rows, columns) as numpy holds them."""
    rng = np.random.default_rng(spec.seed)

    def weight(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0.0, 0.02, size=(rows, cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(spec.dim, dtype=np.float32)

    kv_dim = spec.kv_heads * spec.head_dim
    out: dict[str, np.ndarray] = {"token_embd.weight": weight(VOCAB_SIZE, spec.dim)}
    for layer in range(spec.layers):
        prefix = f"blk.{layer}"
        out[f"{prefix}.attn_norm.weight"] = norm()
        out[f"{prefix}.attn_q.weight"] = weight(spec.dim, spec.dim)
        out[f"{prefix}.attn_k.weight"] = weight(kv_dim, spec.dim)
        out[f"{prefix}.attn_v.weight"] = weight(kv_dim, spec.dim)
        out[f"{prefix}.attn_output.weight"] = weight(spec.dim, spec.dim)
        out[f"{prefix}.ffn_norm.weight"] = norm()
        out[f"{prefix}.ffn_gate.weight"] = weight(spec.ffn_dim, spec.dim)
        out[f"{prefix}.ffn_up.weight"] = weight(spec.ffn_dim, spec.dim)
        out[f"{prefix}.ffn_down.weight"] = weight(spec.dim, spec.ffn_dim)
    out["output_norm.weight"] = norm()
    out["output.weight"] = weight(VOCAB_SIZE, spec.dim)
    steer(out["token_embd.weight"], out["output.weight"], out["output_norm.weight"], allowed_token_ids())
    return out


def _write(path: Path, spec: TinyLlamaSpec) -> None:
    writer = GGUFWriter(str(path), ARCHITECTURE)
    writer.add_name(spec.name)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.dim)
    writer.add_block_count(spec.layers)
    writer.add_feed_forward_length(spec.ffn_dim)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_head_count(spec.heads)
    writer.add_head_count_kv(spec.kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    tokens, scores, types = vocabulary()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, data in tensors(spec).items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def generate(out: Path, spec: TinyLlamaSpec) -> Path:
    """Write the model to `out` atomically and return its path."""
    spec.validate()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write(tmp, spec)
        tmp.chmod(0o644)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _parser() -> argparse.ArgumentParser:
    defaults = TinyLlamaSpec()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="path of the GGUF file to write")
    parser.add_argument("--name", default=defaults.name, help="general.name of the model")
    for field in ("seed", "layers", "dim", "heads", "kv_heads", "ffn_dim", "context_length"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(defaults, field))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    spec = TinyLlamaSpec(
        name=args.name,
        seed=args.seed,
        layers=args.layers,
        dim=args.dim,
        heads=args.heads,
        kv_heads=args.kv_heads,
        ffn_dim=args.ffn_dim,
        context_length=args.context_length,
    )
    try:
        path = generate(args.out, spec)
    except (ValueError, OSError) as exc:
        print(f"tiny_gguf: {exc}", file=sys.stderr)
        return 2
    print(f"{path} {path.stat().st_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
