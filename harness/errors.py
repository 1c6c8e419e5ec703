"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (a file, a field, an option). The message names the field and the fix."""


EXIT_USER_ERROR = 2
