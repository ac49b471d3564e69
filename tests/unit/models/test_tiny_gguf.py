"""The lab's tiny GGUF: a file gguf's reader parses, with llama metadata, and identical on re-runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package (pip install gguf==0.19.0) is not installed")

from aiswarm.models import tiny_gguf  # noqa: E402
from aiswarm.models.tiny_gguf import TinyLlamaSpec, generate, main  # noqa: E402


def _field(reader: gguf.GGUFReader, key: str) -> object:
    field = reader.get_field(key)
    assert field is not None, f"{key} is missing"
    return field.contents()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("gguf") / "tiny.gguf", TinyLlamaSpec(seed=3))


@pytest.fixture(scope="module")
def reader(model: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(model)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("general.architecture", "llama"),
        ("general.name", "aiswarm-tiny-llama"),
        ("llama.block_count", 2),
        ("llama.embedding_length", 64),
        ("llama.feed_forward_length", 128),
        ("llama.attention.head_count", 4),
        ("llama.attention.head_count_kv", 4),
        ("llama.rope.dimension_count", 16),
        ("llama.context_length", 2048),
        ("tokenizer.ggml.model", "llama"),
        ("tokenizer.ggml.unknown_token_id", 0),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
    ],
)
def test_metadata(reader: gguf.GGUFReader, key: str, expected: object) -> None:
    assert _field(reader, key) == expected


def test_byte_vocabulary(reader: gguf.GGUFReader) -> None:
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == 259
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3] == "<0x00>" and tokens[-1] == "<0xFF>"
    assert types[:3] == [
        int(gguf.TokenType.UNKNOWN),
        int(gguf.TokenType.CONTROL),
        int(gguf.TokenType.CONTROL),
    ]
    assert set(types[3:]) == {int(gguf.TokenType.BYTE)}
    assert len(_field(reader, "tokenizer.ggml.scores")) == 259


def test_chat_template_renders_messages(reader: gguf.GGUFReader) -> None:
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 renders the chat template")
    template = jinja2.Template(_field(reader, "tokenizer.chat_template"))
    text = template.render(messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_tensors(reader: gguf.GGUFReader) -> None:
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    assert len(shapes) == 3 + 2 * 9
    # GGUF stores dimensions innermost first: (columns, rows) of the numpy arrays written.
    assert shapes["token_embd.weight"] == [64, 259]
    assert shapes["output.weight"] == [64, 259]
    assert shapes["output_norm.weight"] == [64]
    for layer in range(2):
        assert shapes[f"blk.{layer}.attn_q.weight"] == [64, 64]
        assert shapes[f"blk.{layer}.attn_k.weight"] == [64, 64]
        assert shapes[f"blk.{layer}.ffn_gate.weight"] == [64, 128]
        assert shapes[f"blk.{layer}.ffn_down.weight"] == [128, 64]
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}


def test_size_is_tiny(model: Path) -> None:
    assert 400_000 < model.stat().st_size < 550_000


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    def digest(name: str, seed: int) -> str:
        path = generate(tmp_path / name, TinyLlamaSpec(seed=seed))
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest("a.gguf", 1) == digest("b.gguf", 1)
    assert digest("c.gguf", 1) != digest("d.gguf", 2)


def test_no_temporary_file_is_left(tmp_path: Path) -> None:
    generate(tmp_path / "m.gguf", TinyLlamaSpec())
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"layers": 0}, "layers"),
        ({"dim": -64}, "dim"),
        ({"seed": -1}, "seed"),
        ({"dim": 66}, "dim"),
        ({"dim": 12, "heads": 4}, "dim/heads"),
        ({"kv_heads": 3}, "kv_heads"),
        ({"name": " "}, "name"),
    ],
)
def test_bad_spec_names_the_field(changes: dict[str, object], field: str, tmp_path: Path) -> None:
    spec = TinyLlamaSpec(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"^{field}:"):
        generate(tmp_path / "bad.gguf", spec)
    assert not list(tmp_path.iterdir())


def test_cli_writes_the_file_and_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "cli.gguf"
    assert main([str(out), "--seed", "5", "--name", "lab-model"]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.stat().st_size)]
    assert gguf.GGUFReader(out).get_field("general.name").contents() == "lab-model"


def test_cli_rejects_a_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "x.gguf"), "--layers", "0"]) == 2
    assert "layers: expected a positive integer" in capsys.readouterr().err


def test_vocabulary_matches_constants() -> None:
    tokens, scores, types = tiny_gguf.vocabulary()
    assert len(tokens) == len(scores) == len(types) == tiny_gguf.VOCAB_SIZE
    assert tokens[tiny_gguf.BOS_ID] == "<s>" and tokens[tiny_gguf.EOS_ID] == "</s>"
