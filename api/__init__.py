"""The OpenAI-shaped HTTP surface: request parsing, validation and error bodies (no ASGI here)."""
