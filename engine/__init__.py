"""Genie-TTS wrapped for serving: voices, segmentation, synthesis, scheduling.

The HTTP layer (api/) and the entry point (server.py) use the engine through `engine.interface` only.
`engine/tools/` holds the offline commands (demo voice, checkpoint conversion, predefined voices, downloads).
"""
