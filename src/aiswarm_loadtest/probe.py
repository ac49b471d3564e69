"""Pre-flight probe: is the target reachable and does it accept the key, before any load."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def probe_target(base_url: str, api_key: str, timeout_s: float = 5.0) -> str | None:
    """GET <base_url>/v1/models with the key; None when it answers 200, else what is wrong."""
    url = base_url.rstrip("/") + "/v1/models"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            hint = "set --api-key or AISWARM_API_KEY" if not api_key else "check --api-key / AISWARM_API_KEY"
            return f"the gateway rejected the API key (HTTP {exc.code} from {url}); {hint}"
        return f"{url} answered HTTP {exc.code}; expected 200 from an OpenAI-compatible gateway"
    except ValueError:
        return f"{url} did not answer JSON; is --host an OpenAI-compatible gateway?"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"cannot reach the target {url}: {reason}; check --host and that the gateway is running"
    return None
