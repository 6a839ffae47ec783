"""Errors raised by ``render``: one small hierarchy, every message names the file, the value and the fix."""

from __future__ import annotations


class RenderError(Exception):
    """Base class of every error this package raises on purpose."""


class RenderConfigError(RenderError, ValueError):
    """A setting is out of range or settings contradict each other (e.g. an odd video width)."""


class MissingCheckpointError(RenderError):
    """An overlay needs the network's activations but no checkpoint was given or found for a policy
    version."""


class SelectionError(RenderError, LookupError):
    """An episode selection matched nothing (e.g. no eval episodes for a progression video)."""


class EncoderError(RenderError):
    """The video encoder was misused (e.g. a frame of the wrong size) or could not write its output."""


class AgentViewError(RenderError, ValueError):
    """What the agent saw cannot be re-derived from a log (e.g. its actions do not follow the wrappers named)."""
