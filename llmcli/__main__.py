"""`python -m llmcli` and the `llmcli` console script. Tiny on purpose: start-up time is a feature.

`--help`, `--version` and the common completion TABs are answered by cli/fast.py from generated text,
before click is imported; everything else goes to click. The process is llmcli's own here (`own=True`),
so an ask may end it at once, without the interpreter's teardown (cli/app.py `Ending`); a test that
calls cli.app.main() keeps its interpreter.
"""


def main():
    # Start-up allocates ~27,000 objects that live until exit (modules, classes, click's options): the
    # cyclic GC would scan them ~50 times (~5 ms of a plain ask, issue 22). It is off from the first
    # line until the command is known; cli/app.py turns it back on (gc_after_start_up) before the run
    # proper, and embedded use (a test calling main()) gets it back however main() ends.
    import gc

    gc.disable()
    try:
        import os
        import sys

        try:
            from .cli import fast

            if "_LLMCLI_COMPLETE" in os.environ:
                if fast.try_completion(os.environ):
                    return
            elif fast.try_help_or_version(sys.argv[1:]):
                return
            from .cli.app import Ending, main as cli_main
        except KeyboardInterrupt:
            raise SystemExit(130)
        try:
            cli_main(own=True)
        except Ending as ending:  # an ask: its output written, its log committed (cli/app.py)
            gc.enable()
            ending.now()  # returns only when the interpreter's own end is needed
            raise
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
