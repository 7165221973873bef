"""`ask`/`chat` options for what goes into the request (issue 17): attachments, history formats, the
context window. Kept here so that app.py applies them with one line and calls one function.
"""

import click

from ..prompt.history import FORMATS  # not transcripts: a plain ask parses no history


def history_format_options(f):
    """--history-format and --as (ask and chat)."""
    options = [
        click.option("--history-format", type=click.Choice(FORMATS), metavar="FORMAT",
                     help="Read --history as this format instead of detecting it: openai (JSON/JSONL/YAML "
                          "messages), transcript ('[alice]: text' or 'alice: text' lines), markdown (## user / "
                          "## assistant), llm (llm logs --json), aichat (session YAML).  [default: auto]"),
        click.option("--as", "as_speaker", metavar="NAME",
                     help="In a speaker transcript, the speaker whose turns are the assistant's; the others "
                          "become user messages that keep their names."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def ask_request_options(f):
    """Attachments and the context window (ask)."""
    options = [
        click.option("-a", "--attach", "attachments", multiple=True, metavar="PATH|URL|-",
                     help="Attach an image (png, jpeg, webp, gif), PDF or audio file (wav, mp3), recognised by "
                          "its bytes; '-' reads it from stdin; an image URL is sent as the URL. Repeatable."),
        click.option("--attach-inline", is_flag=True,
                     help="Download URL attachments here (through web_fetch's address checks) and send the bytes."),
        click.option("--pdf-text", is_flag=True,
                     help="Send PDFs as their text, extracted locally (needs pypdf: pip install 'llmcli[pdf]'), "
                          "instead of as file parts."),
        click.option("--max-input-tokens", type=click.IntRange(1), metavar="N",
                     help="Refuse (exit 3) a request estimated above N tokens.  [default: the model's window "
                          "minus the answer budget, when known]"),
        click.option("--truncate", type=click.Choice(["oldest"]), metavar="oldest",
                     help="Over the limit, drop whole oldest turns (never the system prompt or the last "
                          "message) instead of refusing; says how many."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def load_history_file(params: dict):
    """--history FILE in --history-format (auto by default), or None."""
    path = params.get("history_file")
    if not path:
        return None
    from ..prompt.transcripts import load_any

    return load_any(path, params.get("history_format") or "auto", params.get("as_speaker"))


def build_request(settings, prompt, files, no_stdin, params: dict, build_messages, continued=None, file_info=None):
    """(messages, warnings, Prepared): the message list with attachments, cleaned and window-checked."""
    from ..run.prepare import attachment_fetcher, prepare_messages

    specs = tuple(params.get("attachments") or ())
    records = []
    fetch = attachment_fetcher(settings) if params.get("attach_inline") and specs else None

    def attach(read_stdin):
        from ..prompt.attach import load_attachment

        out = []
        for spec in specs:
            a = load_attachment(spec, read_stdin, fetch, inline=bool(params.get("attach_inline")),
                                pdf_text=bool(params.get("pdf_text")))
            records.append(a.record())
            out.append(a)
        return out

    # -c/--cid: the stored conversation (ask refuses --history beside it); else --history in any format
    history = continued[1] if continued else load_history_file(params)
    messages, warnings = build_messages(settings, prompt, files, no_stdin, None,
                                        history=history or [], attach=attach if specs else None,
                                        attach_stdin="-" in specs, continued=bool(continued),
                                        file_info=file_info)
    prepared = prepare_messages(settings, messages, params.get("max_input_tokens"), params.get("truncate"),
                                records)
    return prepared.messages, warnings, prepared


def report_prepared(prepared, run, diag, debug: bool) -> None:
    """Truncation said on stderr; hygiene and context under --debug; the record kept for --json."""
    run.request_report = prepared.record()
    for note in prepared.notes:
        diag.warning(note)
    if debug:
        for line in prepared.debug:
            diag.note(f"llmcli: debug: {line}")
