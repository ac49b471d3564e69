"""Code that runs inside the LiteLLM gateway besides the cost router: the engine guard."""
