"""click parameter types made once and shared by every option that takes a file.

Each `click.Path()` asks gettext for a translation of its own name ("file"), ~50 µs of locale and
file-system lookups apiece; the command tree made 28 of them on every run (issue 22).
"""

import click

FILE = click.Path(dir_okay=False)
FILE_OR_DASH = click.Path(dir_okay=False, allow_dash=True)  # `-` for stdin/stdout
