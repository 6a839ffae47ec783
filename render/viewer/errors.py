"""Errors the viewer's API answers with: each carries its HTTP status; the message names the run, the episode or
the step and what is valid."""

from __future__ import annotations

from render.errors import RenderError


class ViewerError(RenderError):
    """A request the viewer refuses; ``status`` is the HTTP status it answers with."""

    status = 400


class NotFoundError(ViewerError, LookupError):
    """No such run, episode or step among those the viewer was given."""

    status = 404


class BadRequestError(ViewerError, ValueError):
    """A parameter outside its choices (e.g. an unknown overlay)."""

    status = 400


class UnreadableError(ViewerError):
    """A run whose log cannot be read, or a frame that cannot be drawn (e.g. ``overlay=full`` without
    checkpoints): the request is well formed, the data is not."""

    status = 422


class QueueFullError(ViewerError):
    """The render queue holds as many jobs as it may (or the viewer is shutting down): try again later."""

    status = 503
