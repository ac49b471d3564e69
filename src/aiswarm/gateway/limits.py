"""Request limits at the gateway's door: refuse what no engine should see.

Enabled by ``litellm_settings.callbacks: [..., aiswarm.gateway.limits.request_limits]``; the
gateway role adds it last (after the cost router has chosen the model group) with
``litellm_limits_enabled``. It runs inside each LiteLLM worker, in the pre-call hook, before the
router picks a deployment, so a refused request reaches no engine and costs no fallback.

Why: engines answer bad input in their own ways, and LiteLLM's router turned those answers into
failover. A 3 MB prompt sent to a 2048-token llama.cpp kept it busy for minutes after the client
had gone; ``max_tokens: -5`` was refused by vLLM and then served by the fallback engine;
``messages`` as a string surfaced as an ``APIConnectionError``. Here each of those is a 4xx with
the field named, the limit and the measured size:

- **413** when the body is larger than ``max_body_bytes`` (from ``Content-Length``, else the
  parsed body's size);
- **400** when ``messages`` (chat) or ``prompt`` (completions) has the wrong shape, when there are
  more than ``max_messages`` messages, when ``n`` is not 1..``max_n``, when ``max_tokens`` /
  ``max_completion_tokens`` is not a whole number from 1 to what the context leaves after the
  prompt, and when the prompt cannot fit the model group's context window.

The prompt's size in tokens is not known without the engine's tokenizer, so the check uses a
bound that never refuses a prompt that fits: ``ceil(characters / max_chars_per_token)``, at most
as many tokens as the prompt really has when no token stands for more than
``max_chars_per_token`` characters on average. A prompt between that bound and the real limit
reaches the engine, which refuses it exactly; the gateway config returns that refusal to the
client as a 400 instead of falling back (``fallback_on_unsupported_params: false`` and an empty
``context_window_fallbacks`` chain, see ``plugins/filter/gateway.py``).

Settings come from a JSON file named by ``AISWARM_LIMITS`` (the role writes
``/etc/aiswarm/litellm/limits.json``): ``max_body_bytes``, ``max_messages``, ``max_n``,
``max_chars_per_token`` and ``context_windows`` ({model group: tokens}). A group with no known
window gets every check except the ones that need it. Refusals count in
``aiswarm_gateway_refused_requests_total{reason}``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # the unit tests and tools that only use the pure parts

    class CustomLogger:  # type: ignore[no-redef]
        """Stand-in base when LiteLLM is not installed."""


try:
    from prometheus_client import Counter

    _REFUSED: Counter | None = Counter(
        "aiswarm_gateway_refused_requests", "Requests the gateway refused at the door", ["reason"]
    )
except ImportError:
    _REFUSED = None

DEFAULT_PATH = "/etc/aiswarm/litellm/limits.json"
CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})
TEXT_CALL_TYPES = frozenset({"text_completion", "atext_completion"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
log = logging.getLogger("aiswarm.limits")


class Refusal(Exception):
    """A request the gateway refuses: HTTP `status`, the `param` at fault, a message for the client."""

    def __init__(self, status: int, reason: str, param: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.param = param
        self.message = message


def _bad(param: str | None, reason: str, message: str) -> Refusal:
    return Refusal(400, reason, param, message)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 1024
    max_n: int = 4
    max_chars_per_token: float = 8.0
    context_windows: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "limits") -> Limits:
        """Validate a settings mapping; a bad value names its key and what was expected."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        unknown = sorted(set(data) - {"max_body_bytes", "max_messages", "max_n", "max_chars_per_token",
                                      "context_windows"})  # fmt: skip
        if unknown:
            raise ValueError(f"{source}: unknown settings {unknown}")
        values: dict[str, Any] = {}
        for key in ("max_body_bytes", "max_messages", "max_n"):
            if key in data:
                values[key] = _positive(data[key], f"{source}.{key}", whole=True)
        if "max_chars_per_token" in data:
            values["max_chars_per_token"] = float(
                _positive(data["max_chars_per_token"], f"{source}.max_chars_per_token", whole=False)
            )
        windows = data.get("context_windows") or {}
        if not isinstance(windows, Mapping):
            raise ValueError(f"{source}.context_windows: expected {{model group: tokens}}, got {windows!r}")
        values["context_windows"] = {
            str(group): _positive(tokens, f"{source}.context_windows.{group}", whole=True)
            for group, tokens in windows.items()
        }
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        environ = os.environ if environ is None else environ
        path = Path(environ.get("AISWARM_LIMITS", DEFAULT_PATH))
        if not path.exists():
            log.warning(
                "%s does not exist: request limits use their defaults and know no context window", path
            )
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the request limits: {exc}") from None
        return cls.from_mapping(data, str(path))


def _positive(value: Any, where: str, whole: bool) -> int | float:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{where}: expected {kind} > 0, got {value!r}")
    return value


def _text_chars(content: Any, where: str) -> int:
    """Characters of text in a message's content; refuses a shape no engine accepts."""
    if content is None or isinstance(content, str):
        return len(content or "")
    if isinstance(content, list):
        total = 0
        for i, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise _bad(
                    f"{where}[{i}]",
                    "invalid_messages",
                    f"{where}[{i}] must be a content part with a 'type' (e.g. type text with a text), "
                    f"got {type(part).__name__}",
                )
            text = part.get("text")
            if part["type"] == "text" and not isinstance(text, str):
                raise _bad(f"{where}[{i}].text", "invalid_messages", f"{where}[{i}].text must be a string")
            total += len(text) if isinstance(text, str) else 0
        return total
    raise _bad(
        where,
        "invalid_messages",
        f"{where} must be a string, a list of content parts or null, got {type(content).__name__}",
    )


def _chat_chars(data: Mapping[str, Any], limits: Limits) -> int:
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        got = "an empty list" if isinstance(messages, list) else type(messages).__name__
        raise _bad(
            "messages",
            "invalid_messages",
            f'messages must be a non-empty list of {{"role": ..., "content": ...}} objects, got {got}',
        )
    if len(messages) > limits.max_messages:
        raise _bad(
            "messages",
            "too_many_messages",
            f"messages has {len(messages)} entries; this gateway accepts at most {limits.max_messages}",
        )
    total = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            got = type(message).__name__
            raise _bad(
                where, "invalid_messages", f"{where} must be an object with 'role' and 'content', got {got}"
            )
        role = message.get("role")
        if role not in ROLES:
            raise _bad(
                f"{where}.role",
                "invalid_messages",
                f"{where}.role must be one of {sorted(ROLES)}, got {role!r}",
            )
        total += _text_chars(message.get("content"), f"{where}.content")
    return total


def _prompt_chars(data: Mapping[str, Any]) -> int:
    prompt = data.get("prompt")
    if isinstance(prompt, str) and prompt:
        return len(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return max(len(p) for p in prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(p, int) and not isinstance(p, bool) for p in prompt)
    ):
        return 0  # token ids: the engine counts them exactly
    got = type(prompt).__name__
    raise _bad("prompt", "invalid_prompt", f"prompt must be a non-empty string or list of strings, got {got}")


def body_size(data: Mapping[str, Any]) -> int | None:
    """The request body's size in bytes, from the proxy's copy of its headers (``Content-Length``)."""
    request = data.get("proxy_server_request")
    headers = request.get("headers") if isinstance(request, Mapping) else None
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            if str(name).lower() == "content-length":
                try:
                    return int(value)
                except (TypeError, ValueError):
                    return None
    return None


def check(data: Mapping[str, Any], call_type: str, limits: Limits, size: int | None = None) -> int:
    """Raise `Refusal` for a request that must not reach an engine; else the prompt's lower-bound tokens.

    `size` is the body's size in bytes when known (else measured from `data`).
    """
    if size is None:
        size = body_size(data)
    if size is None:
        body = {
            k: v for k, v in data.items() if k not in ("proxy_server_request", "metadata", "litellm_metadata")
        }
        size = len(json.dumps(body, default=str).encode())
    if size > limits.max_body_bytes:
        raise Refusal(
            413,
            "body_too_large",
            None,
            f"request body is {size} bytes; this gateway accepts at most {limits.max_body_bytes} bytes",
        )
    chars = _chat_chars(data, limits) if call_type in CHAT_CALL_TYPES else _prompt_chars(data)
    n = data.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limits.max_n):
        raise _bad("n", "invalid_n", f"n must be a whole number from 1 to {limits.max_n}, got {n!r}")
    group = str(data.get("model") or "")
    window = limits.context_windows.get(group)
    tokens = math.ceil(chars / limits.max_chars_per_token)
    if window is not None and tokens >= window:
        raise _bad(
            "messages" if call_type in CHAT_CALL_TYPES else "prompt",
            "context_exceeded",
            f"the prompt has {chars} characters, at least {tokens} tokens, and model group '{group}' has a "
            f"context window of {window} tokens",
        )
    for key in TOKEN_FIELDS:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(key, "invalid_max_tokens", f"{key} must be a whole number >= 1, got {value!r}")
        if window is not None and value > window - tokens:
            raise _bad(
                key,
                "invalid_max_tokens",
                f"{key} is {value}, but model group '{group}' has a context window of {window} tokens "
                f"and the prompt takes at least {tokens} of them: at most {window - tokens} tokens are left",
            )
    return tokens


class RequestLimits(CustomLogger):
    """LiteLLM pre-call hook that refuses bad requests with a 4xx before any engine sees them."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits

    @classmethod
    def from_env(cls) -> RequestLimits:
        return cls(Limits.from_env())

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str
    ) -> dict | None:
        if call_type not in CHAT_CALL_TYPES and call_type not in TEXT_CALL_TYPES:
            return data
        try:
            check(data, call_type, self.limits)
        except Refusal as refusal:
            if _REFUSED is not None:
                _REFUSED.labels(reason=refusal.reason).inc()
            log.info("refused (%s): %s", refusal.reason, refusal.message)
            raise _client_error(refusal) from None
        return data


def _client_error(refusal: Refusal) -> Exception:
    """The proxy's own error type, so the client gets the status, the param and the message."""
    try:
        from litellm.proxy._types import ProxyException
    except ImportError:  # outside the proxy (unit tests)
        return refusal
    return ProxyException(
        message=refusal.message,
        type="invalid_request_error",
        param=refusal.param,
        code=refusal.status,
    )


request_limits = RequestLimits.from_env()
