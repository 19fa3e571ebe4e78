"""Errors a user can fix. The CLI prints their message on one line and exits 2.

The library (:mod:`lstm_core`) raises its own exceptions (:class:`lstm_core.errors.LstmCoreError`
and subclasses); :data:`USER_ERRORS` is what the suite treats as the user's to fix.
"""

from lstm_core.errors import ExportMismatchError, LstmCoreError

__all__ = ["USER_ERRORS", "DiskFullError", "ExportMismatchError", "UserError"]


class UserError(Exception):
    """Bad input (file, field, flag). The message names the file/field and what was expected."""


class DiskFullError(UserError):
    """No space left for a checkpoint or output; what was saved before is kept for a rerun."""


USER_ERRORS = (UserError, LstmCoreError)
