"""Errors a user can act on: the CLI prints their message alone, without a traceback."""


class UserError(Exception):
    """Bad arguments, a missing or malformed file, an impossible request.

    The CLI prints ``error: <message>`` and exits with status 2.
    """
