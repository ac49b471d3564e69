"""Opt-in step ramp: `locust -f loadtests/chat_stream.py,shapes/step_ramp.py ...` (see --ramp-*)."""

from __future__ import annotations

from aiswarm_loadtest.shapes import StepRampShape


class StepRamp(StepRampShape):
    """The step ramp with the --ramp-* options (10 users per 30 s up to 50, hold 60 s by default)."""
