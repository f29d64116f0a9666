"""The exception for a user's mistake, kept apart from the library's own bugs.

``python -m retina_lib`` prints a user's mistake as one line (``error: ...``)
and shows the traceback of anything else, so that a bug in the library is
never mistaken for bad input. A plain ``ValueError`` therefore means "a bug,
show me where"; code that refuses what the user gave (a file, an argument, a
value) raises :class:`UserInputError` or one of its documented subclasses:
``DatasetError`` (retina_lib.data.readers), ``WeightsError``
(retina_lib.training.weights) and ``ResumeError``
(retina_lib.training.run_folder).

It lives in a module of its own, with no imports, so that every layer of the
package can raise it without importing the command line.
"""
from __future__ import annotations


class UserInputError(ValueError):
    """What the user gave cannot be used; the message names the file, argument or value and why.

    A ``ValueError`` subclass, so ``except ValueError`` in a notebook or a test
    still catches it.
    """
