"""The one exception type for problems a user can cause and fix."""


class LiverSegError(Exception):
    """Bad input or configuration: the message says what is wrong and what to do.

    The command line prints it as one ``error: ...`` line and exits with 2;
    the pages show it in an error box. Anything else is a bug.
    """
