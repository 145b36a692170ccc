"""The base class of errors that are the user's to fix; the ``lofi`` command reports them without a traceback.

The command prints ``lofi CMD: <message>`` and exits with status 2 (``-v`` adds the traceback), so a message puts
the file or key first and what to do last; a message of several lines (e.g. a list of changed keys) is printed
whole. Subclass it beside the builtin class that callers catch: ``class FolderBusyError(UserError,
RuntimeError)``. ``ValueError`` (``ConfigError``, ``AnnotationError``), ``OSError`` and ``VideoReadError`` are
reported the same way without it (:func:`lofi.cli.user_errors`). This module imports nothing from lofi, so any
module can use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Wrong input or a busy or mismatched folder, not a bug in lofi: the CLI prints the message, not a traceback."""
