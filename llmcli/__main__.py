"""`python -m llmcli` and the `llmcli` console script. Tiny on purpose: start-up time is a feature."""


def main():
    try:
        from .cli.app import main as cli_main
    except KeyboardInterrupt:
        raise SystemExit(130)
    cli_main()


if __name__ == "__main__":
    main()
