"""The experiment's CLI commands; each module exposes ``configure(parser)`` and ``run(args)``."""
