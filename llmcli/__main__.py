"""`python -m llmcli` and the `llmcli` console script. Tiny on purpose: start-up time is a feature.

`--help`, `--version` and the common completion TABs are answered by cli/fast.py from generated text,
before click is imported; everything else goes to click.
"""


def main():
    import os
    import sys

    try:
        from .cli import fast

        if "_LLMCLI_COMPLETE" in os.environ:
            if fast.try_completion(os.environ):
                return
        elif fast.try_help_or_version(sys.argv[1:]):
            return
        from .cli.app import main as cli_main
    except KeyboardInterrupt:
        raise SystemExit(130)
    cli_main()


if __name__ == "__main__":
    main()
