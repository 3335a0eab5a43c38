#!/usr/bin/env python
"""Django's command-line utility. Defaults to the dev settings; production sets
DJANGO_SETTINGS_MODULE=chatbot_site.settings.production."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
