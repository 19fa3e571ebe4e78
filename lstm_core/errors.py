"""Errors a user can fix. The CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """Bad input (file, field, flag). The message names the file/field and what was expected."""


class ExportMismatchError(UserError):
    """A converted model disagrees with the Keras model it came from; nothing was written."""


class DiskFullError(UserError):
    """No space left for a checkpoint or output; what was saved before is kept for a rerun."""
