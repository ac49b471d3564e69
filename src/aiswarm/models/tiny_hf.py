"""Write a tiny random llama model in Hugging Face layout, for labs without a model hub.

    python -m aiswarm.models.tiny_hf DEST [--seed N] [--stamp NAME]
    python tiny_hf.py DEST ...          (a plain script, with printable.py beside it)

DEST gets config.json, generation_config.json, a byte-level tokenizer (tokenizer.json,
tokenizer_config.json with a chat template) and model.safetensors with random bf16 weights:
2 layers, hidden size 128, 2 heads of 64 dimensions (vLLM's CPU attention has no kernel for
smaller heads), a 259-token vocabulary (<unk>, <s>, </s> and the 256 bytes), about 800 KB.
The weights are steered (see `printable`) so that only printable ASCII can be generated: every
answer shows text from its first token and runs to its max_tokens (generation_config.json caps
an answer that names no max_tokens). The text is noise; the engine that produces it is real.
Only transformers, torch, tokenizers and numpy are needed, all of which come with vLLM.

The folder is written under a temporary name and renamed when complete, so a half-written
model never looks present. `--stamp NAME` writes an empty file NAME into the folder; a folder
without that stamp is regenerated, so a deployment can key the stamp on the generator's hash.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

try:
    from aiswarm.models.printable import SPECIAL_TOKENS, allowed_token_ids, steer
except ImportError:  # run as a plain script, with printable.py copied beside it
    from printable import SPECIAL_TOKENS, allowed_token_ids, steer  # type: ignore[no-redef]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
# Default answer length for a request that names no max_tokens: the model never ends by itself.
DEFAULT_MAX_NEW_TOKENS = 128


def byte_vocabulary() -> dict[str, int]:
    """The special tokens followed by one ``<0xNN>`` token per byte."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(SPECIAL_TOKENS) + byte
    return vocab


def write_tokenizer(dest: Path, vocab: dict[str, int]) -> None:
    """A byte-fallback BPE tokenizer with no merges: every byte of the text is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(dest)


def write_model(dest: Path, vocab_size: int, seed: int) -> None:
    """Random bf16 weights of a 2-layer llama, saved as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        tensors = (model.model.embed_tokens.weight, model.lm_head.weight, model.model.norm.weight)
        arrays = [tensor.detach().numpy().copy() for tensor in tensors]
        steer(*arrays, allowed_token_ids())
        for tensor, array in zip(tensors, arrays, strict=True):
            tensor.copy_(torch.from_numpy(array))
    model.generation_config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    model = model.to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="model folder to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--stamp", default="", help="file written into DEST; a DEST without it is rewritten")
    args = parser.parse_args(argv)
    dest: Path = args.dest
    stamp = args.stamp
    if "/" in stamp or stamp in (".", ".."):
        parser.error(f"--stamp: expected a plain file name, got {stamp!r}")
    if (dest / "config.json").exists() and (not stamp or (dest / stamp).exists()):
        print(f"{dest} already holds a model")
        return 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        vocab = byte_vocabulary()
        write_tokenizer(work, vocab)
        write_model(work, len(vocab), args.seed)
        if stamp:
            (work / stamp).touch()
        for path in [work, *work.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
