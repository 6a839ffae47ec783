"""``python -m render``: see :mod:`render.cli` (imported only here, so worker processes that re-import this
module as their ``__main__`` stay free of torch and Hydra)."""

if __name__ == "__main__":
    from render.cli import cli

    cli()
