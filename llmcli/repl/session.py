"""`llmcli chat`: a prompt-toolkit REPL on top of `chat.ChatRun` and `output.TextRenderer`.

Two halves, kept apart so that each is easy to read and to test:

* `ChatSession` is the conversation: the message list, the settings that change during a session
  (/model, /system, /tools, /option), files waiting for the next message, usage, and every
  /command. It is plain Python: no prompt_toolkit, no terminal, no sys.stdout.
* `run_repl` is the thin terminal loop: read a line with prompt_toolkit, hand it to the session,
  stream the answer when the session says so, print one line per error, repeat.

Ctrl-C while an answer streams must stop it at once (issue: "returns to the prompt within a
second"). The ChatRun runs in the main thread, so SIGINT arrives as KeyboardInterrupt inside the
socket read; closing the `events()` generator runs its `finally` blocks, which close the HTTP
response, so the server sees the connection go away immediately. What arrived is kept, marked.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from ..run.loop import ChatRun, sum_usage
from ..config.settings import Settings, parse_option_value
from ..errors import Interrupted, LLMCliError, UsageError
from ..prompt.history import (build_user_message, decode_input, dump_history, file_record, format_file_block,
                              read_file_bytes, with_system_prompt)
from ..output.render import Diagnostics, TextRenderer, color_enabled, usage_parts
from ..run.runner import isatty
from ..status import ExitStatus

# Appended to a partial answer kept in the conversation, so that the model (and the user reading a
# saved conversation) can tell that the text stops early on purpose.

PROMPT = "> "
HISTORY_FILE = "chat_history"
FALLBACK_TOOL_NAMES = ("web_search", "web_fetch")
# Offered by Tab after /option; any key is accepted, as with -o.
COMMON_OPTIONS = ("temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty",
                  "frequency_penalty", "reasoning_effort")


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str


COMMANDS = (
    Command("help", "/help", "this list"),
    Command("model", "/model [NAME]", "show the model, or switch for the following turns"),
    Command("system", "/system [TEXT]", "show the system prompt, or set it"),
    Command("tools", "/tools [on|off|NAME…]", "show the tools, enable all, disable, or enable these"),
    Command("option", "/option KEY [VALUE]", "set a request option like -o; without VALUE, remove it"),
    Command("file", "/file PATH", "add a text file to the next message"),
    Command("attach", "/attach PATH|URL", "add an image, PDF or audio file to the next message"),
    Command("retry", "/retry", "regenerate the last answer"),
    Command("undo", "/undo", "drop the last exchange (your message and the answer)"),
    Command("clear", "/clear", "empty the conversation (the system prompt stays)"),
    Command("save", "/save FILE", "save the conversation (JSON; .jsonl, .yaml by extension)"),
    Command("load", "/load FILE", "replace the conversation with a saved one (any --history format)"),
    Command("compact", "/compact", "replace the older turns with a summary the model writes"),
    Command("usage", "/usage", "tokens of the last answer and of the whole conversation"),
    Command("history", "/history [N]", "the latest conversations in the log (N of them, default 10)"),
    Command("resume", "/resume ID", "switch to a logged conversation (any unique id prefix)"),
    Command("reasoning", "/reasoning [on|off]", "show or hide the model's reasoning"),
    Command("exit", "/exit, /quit", "leave (Ctrl-D does too)"),
)
COMMAND_ALIASES = {"quit": "exit"}
COMMAND_NAMES = tuple(c.name for c in COMMANDS) + tuple(COMMAND_ALIASES)

KEYS_HELP = ("Keys: Enter sends; Alt+Enter or Esc Enter inserts a newline (a paste is one message); "
             "Ctrl-R searches history; Tab completes; Ctrl-C stops an answer or clears the line; Ctrl-D exits. "
             "Start a message with // to send a leading /.")


@dataclass
class Outcome:
    """What the REPL does after a line: print `text` and `warnings`, then maybe send a turn or exit."""

    text: str = ""
    warnings: List[str] = field(default_factory=list)
    send: bool = False
    exit: bool = False
    compact: bool = False  # run_repl: summarise the older turns now (a request)


def available_tool_names() -> Tuple[str, ...]:
    try:
        from ..tools import BUILTIN_TOOLS
    except ImportError:
        return FALLBACK_TOOL_NAMES
    return tuple(str(getattr(tool, "name", tool)) for tool in BUILTIN_TOOLS)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _brief(text: Optional[str], limit: int = 100) -> str:
    words = " ".join((text or "").split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _format_usage(usage: Optional[dict], cost=None) -> str:
    if not usage:
        return "not reported"
    return " · ".join(usage_parts(usage, cost)) or "not reported"


class ChatSession:
    """The conversation and the settings a session can change; every /command acts on it."""

    def __init__(self, settings: Settings, history: Optional[List[dict]] = None, show_reasoning: bool = True):
        self.settings = settings
        self.messages: List[dict] = with_system_prompt(history or [], settings.system,
                                                       settings.source_of("system") == "--system flag")
        self.show_reasoning = show_reasoning
        self.pending_files: List[Tuple[str, str]] = []
        self.pending_attachments: list = []  # llmcli.prompt.attach.Attachment
        self.turn_files: list = []  # records of what the last message carried, for the log
        self.turn_attachments: list = []
        self.answers = 0
        self.last_usage: Optional[dict] = None  # the last answer's (summed over its tool rounds)
        self.usages: List[dict] = []  # every answer's, for /usage totals
        self.last_cost = None  # run.cost.Cost of the last answer, and of every answer
        self.costs: list = []
        self.last_interrupted = False  # the last answer was stopped (Ctrl-C) or failed mid-way
        self.answered: List[bool] = []  # per answer: whether its usage is in self.usages (for /undo)
        self.context_tokens: Optional[int] = None  # total_tokens of the last request: the conversation's size
        self.server_model: Optional[str] = None
        # --max-cost / --max-tokens-total / config budget: for the whole session, every answer counted
        from ..run.runner import make_budget

        self.budget = make_budget(settings)
        # The conversation log: the id this session's exchanges are recorded under (None until the
        # first one, or a continued conversation's), and whether recording is on.
        self.conversation_id: Optional[str] = None
        self.log_enabled = False

    # -- lines --------------------------------------------------------------------------------
    def submit(self, line: str) -> Outcome:
        """A line from the prompt: a /command, or a message to send ('//' sends a leading '/')."""
        if line.startswith("/") and not line.startswith("//"):
            return self.run_command(line)
        if line.startswith("//"):
            line = line[1:]
        if not line.strip():
            return Outcome()
        return self.add_user_message(line)

    def add_user_message(self, text: str) -> Outcome:
        content = build_user_message(text, None, self.pending_files)
        if content is None and not self.pending_attachments:
            return Outcome()
        # What the log records of this message (issue 17): /file files by name and sha256, /attach
        # attachments by name, type, size and sha256; never the bytes.
        self.turn_files = [file_record(name, body) for name, body in self.pending_files]
        self.turn_attachments = [a.record() for a in self.pending_attachments]
        self.pending_files = []
        if self.pending_attachments:
            from ..prompt.attach import user_content

            self.messages.append({"role": "user", "content": user_content(content, self.pending_attachments)})
            self.pending_attachments = []
        else:
            self.messages.append({"role": "user", "content": content})
        warnings = []
        size = len(content.encode("utf-8")) if content else 0
        if size > self.settings.max_input_bytes:
            warnings.append(f"the message is large ({size:,} bytes, above max_input_bytes "
                            f"{self.settings.max_input_bytes:,}); it may exceed the model's context")
        return Outcome(warnings=warnings, send=True)

    def finish_turn(self, run: ChatRun, error: Optional[LLMCliError] = None, interrupted: bool = False) -> None:
        """Take the run's messages; after a failure or Ctrl-C keep the partial answer, marked.

        The user's message is in run.messages whatever happened, so /retry always has something to resend.
        """
        self.messages = run.kept_conversation(error, interrupted)
        if run.model:
            self.server_model = run.model
        self.last_interrupted = bool(interrupted or error is not None)
        if run.usages:
            self.answers += 1
            self.last_usage = run.usage
            self.usages.append(run.usage)
            self.last_cost = run.cost
            self.costs.append(self.last_cost)
            self.answered.append(True)
            total = run.usages[-1].get("total_tokens")
            if isinstance(total, int):
                self.context_tokens = total
        elif self.last_interrupted and run.partial_assistant_message() is not None:
            # An answer stopped before the server sent usage is still an answer: /usage says so
            self.answers += 1
            self.last_usage, self.last_cost = None, None
            self.answered.append(False)

    def reset_totals(self) -> None:
        """/clear and /load start a new conversation: its answers and tokens start from zero."""
        self.answers, self.usages, self.costs, self.answered = 0, [], [], []
        self.last_usage, self.last_cost, self.last_interrupted = None, None, False

    # -- commands -----------------------------------------------------------------------------
    def run_command(self, line: str) -> Outcome:
        name, _, arg = line[1:].partition(" ")
        if not name and not arg:
            return self._cmd_help("")
        name = name.strip().lower()
        name = COMMAND_ALIASES.get(name, name)
        method = getattr(self, f"_cmd_{name}", None)
        if method is None:
            raise UsageError(f"unknown command /{name} (type /help for the commands)")
        return method(arg.strip())

    def _cmd_help(self, arg):
        width = max(len(c.usage) for c in COMMANDS)
        lines = [f"  {c.usage.ljust(width)}  {c.help}" for c in COMMANDS]
        return Outcome("Commands:\n" + "\n".join(lines) + "\n" + KEYS_HELP)

    def _cmd_exit(self, arg):
        return Outcome(exit=True)

    def _cmd_model(self, arg):
        if not arg:
            shown = self.settings.model or "(the server's default)"
            if self.server_model and self.server_model != self.settings.model:
                shown += f" (the server reported {self.server_model})"
            return Outcome(f"model: {shown}")
        model = self.resolve_model(arg)
        self.settings = self.settings.with_changes(model=model)
        return Outcome(f"model: {model}" + (f" (alias {arg})" if model != arg else ""))

    def resolve_model(self, name: str) -> str:
        """An alias from the config, else the name; 'provider/model' for this provider drops the prefix."""
        model = dict(self.settings.aliases).get(name, name)
        prefix, _, rest = model.partition("/")
        if rest and self.settings.provider and prefix == self.settings.provider:
            model = rest
        return model

    def model_choices(self) -> List[str]:
        """For Tab after /model: the config's aliases and this provider's models, and the current model."""
        names = [alias for alias, _ in self.settings.aliases] + list(self.settings.model_names)
        if self.settings.model:
            names.append(self.settings.model)
        return list(dict.fromkeys(names))

    def system_prompt(self) -> Optional[str]:
        if self.messages and self.messages[0].get("role") == "system":
            return self.messages[0].get("content")
        return None

    def _cmd_system(self, arg):
        if not arg:
            current = self.system_prompt()
            return Outcome(f"system: {current}" if current else "no system prompt (set one with /system TEXT)")
        if self.system_prompt() is not None:
            self.messages[0] = {"role": "system", "content": arg}
        else:
            self.messages.insert(0, {"role": "system", "content": arg})
        return Outcome("system prompt set")

    def _cmd_tools(self, arg):
        available = available_tool_names()
        words = arg.split()
        mcp = getattr(self, "mcp", None)
        if not words:
            # MCP tools are offered whatever /tools says (-T/--no-tools filter them); listed once started
            listed = mcp.listed_names() if mcp is not None else None
            extra = "" if mcp is None else "\nMCP tools: " + (", ".join(listed) if listed is not None
                                                                else "listed at the first answer")
            if self.settings.tools:
                return Outcome("tools: " + ", ".join(self.settings.tools) + extra)
            return Outcome(f"tools: off (available: {', '.join(available)}; /tools on enables all)" + extra)
        if words == ["on"]:
            tools = tuple(available)
        elif words == ["off"]:
            tools = ()
        else:
            unknown = [w for w in words if w not in available]
            if unknown and mcp is None:  # with MCP servers, other names filter their tools (server__*)
                raise UsageError(f"unknown tool {', '.join(unknown)} (available: {', '.join(available)}; "
                                 "or /tools on, /tools off)")
            tools = tuple(dict.fromkeys(words))
        self.settings = self.settings.with_changes(tools=tools)
        return Outcome("tools: " + (", ".join(tools) if tools else "off"))

    def _cmd_option(self, arg):
        options = dict(self.settings.options)
        if not arg:
            if not options:
                return Outcome("no request options (set one with /option KEY VALUE)")
            return Outcome("\n".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in options.items()))
        key, _, value = arg.partition(" ")
        if value.strip():
            options[key] = parse_option_value(value.strip())
            text = f"{key} = {json.dumps(options[key], ensure_ascii=False)}"
        else:
            options.pop(key, None)
            text = f"{key} removed"
        self.settings = self.settings.with_changes(options=tuple(options.items()))
        return Outcome(text)

    def _cmd_file(self, arg):
        if not arg:
            if not self.pending_files:
                raise UsageError("usage: /file PATH")
            return Outcome("for the next message: " + ", ".join(name for name, _ in self.pending_files))
        name = _unquote(arg)
        warnings: List[str] = []
        text = decode_input(read_file_bytes(os.path.expanduser(name), limit=self.settings.max_input_bytes), name, warnings)
        self.pending_files.append((name, text))
        size = len(format_file_block(name, text))
        return Outcome(f"added {name} ({size:,} characters) to the next message", warnings)

    def _cmd_attach(self, arg):
        from ..prompt.attach import load_attachment

        if not arg:
            if not self.pending_attachments:
                raise UsageError("usage: /attach PATH|URL")
            return Outcome("for the next message: " + ", ".join(a.name for a in self.pending_attachments))
        name = _unquote(arg)

        def no_stdin():
            raise UsageError("/attach cannot read stdin; give a file or URL")

        attachment = load_attachment(name, no_stdin)
        self.pending_attachments.append(attachment)
        size = f"{attachment.size:,} bytes" if attachment.size is not None else "sent as a URL"
        return Outcome(f"attached {name} ({attachment.media_type}, {size}) to the next message")

    def window(self) -> Optional[int]:
        """The model's window when known without asking the server (config, local n_ctx, built-in table)."""
        from ..run.prepare import model_window

        return model_window(self.settings, 0)[0]

    def prepare(self, diag=None) -> None:
        """Before each request: hygiene (reported under --debug) and the window check (over it: an
        error naming /compact; the message stays for /retry)."""
        from ..errors import InputError
        from ..run.prepare import prepare_messages

        try:
            prepared = prepare_messages(self.settings, self.messages)
        except InputError as exc:
            raise InputError(f"{exc}; in chat, /compact summarises the older turns, /undo drops the last") from None
        self.messages = prepared.messages
        if diag is not None and self.settings.debug:
            for line in prepared.debug:
                diag.note(f"llmcli: debug: {line}")

    def _cmd_compact(self, arg):
        from ..prompt.context import compaction_split

        if compaction_split(self.messages) is None:
            raise UsageError("nothing to compact: there is only the last exchange")
        return Outcome(compact=True)

    def compact(self, summarise=None) -> str:
        """Replace the older turns by a model-written summary (one request); the last turn stays."""
        from ..prompt.context import compacted, compaction_split, estimate_tokens, summary_request

        split = compaction_split(self.messages)
        if split is None:
            raise UsageError("nothing to compact: there is only the last exchange")
        system, older, kept = split
        if summarise is None:
            from ..run.prepare import summarise
        before = estimate_tokens(self.messages)
        summary = summarise(self.settings, summary_request(system, older))
        self.messages = compacted(system, summary, kept)
        self.context_tokens = None
        after = estimate_tokens(self.messages)
        return (f"compacted {len(older)} older message{'s' if len(older) != 1 else ''} into a summary "
                f"(about {before:,} → {after:,} tokens)")

    def should_auto_compact(self) -> bool:
        """chat.auto_compact (a fraction of the window, default off) reached by the last request."""
        from ..prompt.context import compaction_split, estimate_tokens

        threshold = dict(self.settings.request).get("auto_compact")
        window = self.window() if threshold else None
        if not threshold or not window:
            return False
        used = self.context_tokens if self.context_tokens is not None else estimate_tokens(self.messages)
        return used >= threshold * window and compaction_split(self.messages) is not None

    def _last_user_index(self) -> Optional[int]:
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].get("role") == "user":
                return index
        return None

    def _cmd_retry(self, arg):
        index = self._last_user_index()
        if index is None:
            raise UsageError("nothing to retry: there is no message yet")
        del self.messages[index + 1:]
        return Outcome(send=True)

    def _cmd_undo(self, arg):
        index = self._last_user_index()
        if index is None:
            raise UsageError("nothing to undo")
        removed = len(self.messages) - index
        answered = any(m.get("role") == "assistant" for m in self.messages[index:])
        del self.messages[index:]
        self.context_tokens = None
        if answered and self.answered:  # the exchange's answer leaves the totals too
            if self.answered.pop():
                self.usages.pop()
                self.costs.pop()
            self.answers -= 1
            self.last_usage = self.usages[-1] if self.usages else None
            self.last_cost = self.costs[-1] if self.costs else None
            self.last_interrupted = False
        return Outcome(f"removed the last exchange ({removed} message{'s' if removed != 1 else ''})")

    def _cmd_clear(self, arg):
        system = self.system_prompt()
        self.messages = [{"role": "system", "content": system}] if system is not None else []
        self.pending_files = []
        self.context_tokens = None
        self.reset_totals()
        self.conversation_id = None  # what follows is a new conversation in the log
        return Outcome("conversation cleared" + (" (the system prompt stays)" if system is not None else ""))

    def _cmd_save(self, arg):
        if not arg:
            raise UsageError("usage: /save FILE")
        path = os.path.expanduser(_unquote(arg))
        dump_history(self.messages, path)
        return Outcome(f"saved {len(self.messages)} messages to {path}")

    def _cmd_load(self, arg):
        if not arg:
            raise UsageError("usage: /load FILE")
        from ..prompt.transcripts import load_any

        loaded = load_any(os.path.expanduser(_unquote(arg)))
        system = self.system_prompt()
        # The file is the conversation; without a system message of its own, ours stays.
        if system is not None and not any(m.get("role") == "system" for m in loaded):
            loaded.insert(0, {"role": "system", "content": system})
        self.messages = loaded
        self.context_tokens = None
        self.reset_totals()
        self.conversation_id = None  # a new conversation in the log
        return Outcome(f"loaded {len(loaded)} messages")

    def _cmd_usage(self, arg):
        if not self.answers:
            return Outcome("no usage reported yet")
        if self.last_usage is None:
            last = "interrupted before the server reported its usage"
        else:
            last = _format_usage(self.last_usage, self.last_cost) + (" (interrupted)" if self.last_interrupted else "")
        if not self.usages:
            return Outcome(f"last answer: {last}")
        total = sum_usage(self.usages)
        return Outcome(f"last answer: {last}\n"
                       f"conversation ({self.answers} answer{'s' if self.answers != 1 else ''}): "
                       f"{_format_usage(total, self.session_cost())}")

    def session_cost(self):
        """Every answer's cost added up (unknown if one of them is)."""
        from ..run.cost import sum_costs

        return sum_costs(self.costs) if self.costs else None

    def _cmd_history(self, arg):
        from ..store.db import Store, db_path
        from ..store.pending import log_exists

        try:
            count = int(arg) if arg else 10
        except ValueError:
            raise UsageError("usage: /history [N]") from None
        path = db_path(self.settings.home)
        if not log_exists(path):
            return Outcome("no conversations logged yet")
        with Store(path, create=False) as store:
            rows = store.list_conversations(limit=max(1, count))
        if not rows:
            return Outcome("no conversations logged yet")
        lines = []
        for r in rows:
            mark = "*" if r["id"] == self.conversation_id else " "
            title = (r.get("title") or "")[:60]
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_created"]))
            lines.append(f"{mark} {r['id'][:12]}  {when}  {r.get('model') or '-'}  {r['turns']} turn"
                         f"{'s' if r['turns'] != 1 else ''}  {title}")
        return Outcome("\n".join(lines) + "\n(/resume ID continues one)")

    def _cmd_resume(self, arg):
        if not arg:
            raise UsageError("usage: /resume ID (see /history)")
        from ..store.db import Store, db_path

        with Store(db_path(self.settings.home), create=False) as store:
            cid = store.resolve(arg)
            exchanges = store.exchanges(cid)
        return Outcome(self.resume(cid, exchanges))

    def resume(self, conversation_id: str, exchanges: List[dict], shown: int = 3) -> str:
        """Continue a logged conversation: its stored messages become ours; returns a short recap."""
        from ..store.db import conversation_messages

        self.conversation_id = conversation_id
        self.messages = conversation_messages(exchanges[-1]) if exchanges else []
        if self.settings.source_of("system") == "--system flag":
            self.messages = with_system_prompt(self.messages, self.settings.system, True)
        self.context_tokens = None
        lines = [f"resumed conversation {conversation_id} ({len(exchanges)} exchange"
                 f"{'s' if len(exchanges) != 1 else ''})"]
        if len(exchanges) > shown:
            lines.append(f"  … {len(exchanges) - shown} earlier")
        for ex in exchanges[-shown:]:
            lines.append("  you: " + _brief(ex.get("prompt")))
            lines.append("  answer: " + _brief(ex.get("answer")) + (" [partial]" if ex.get("partial") else ""))
        return "\n".join(lines)

    def _cmd_reasoning(self, arg):
        if arg.lower() in ("on", "off"):
            self.show_reasoning = arg.lower() == "on"
        elif arg:
            raise UsageError("usage: /reasoning [on|off]")
        else:
            self.show_reasoning = not self.show_reasoning
        return Outcome("reasoning: " + ("shown" if self.show_reasoning else "hidden"))

    # -- display ------------------------------------------------------------------------------
    def toolbar_text(self) -> str:
        s = self.settings
        where = s.provider or (s.base_url or "").split("://", 1)[-1].split("/", 1)[0]
        model = s.model or self.server_model or "(default model)"
        if model.startswith("/") or model.endswith(".gguf"):
            model = os.path.basename(model)  # llama.cpp's server reports the model file's full path
        parts = [f"{where}/{model}"]
        if self.context_tokens is not None:
            window = self.window()
            if window:
                parts.append(f"{self.context_tokens:,}/{window:,} tokens ({100 * self.context_tokens // window}%)")
            else:
                parts.append(f"{self.context_tokens:,} tokens")
        cost = self.session_cost()
        if cost is not None:
            parts.append(cost.shown())
        if s.tools:
            parts.append("tools: " + ",".join(s.tools))
        if self.pending_files:
            parts.append(f"{len(self.pending_files)} file(s) for the next message")
        if self.pending_attachments:
            parts.append(f"{len(self.pending_attachments)} attachment(s) for the next message")
        parts.append("/help")
        return " " + " · ".join(parts) + " "


class ReplCompleter(Completer):
    """Tab: /command names, then their arguments (models, paths, tools, option keys, on/off)."""

    def __init__(self, session: ChatSession):
        self.session = session
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document, complete_event):
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        if " " not in text:
            for name in COMMAND_NAMES:
                if name.startswith(text[1:]):
                    yield Completion("/" + name, start_position=-len(text))
            return
        command, _, arg = text.partition(" ")
        command = COMMAND_ALIASES.get(command[1:], command[1:])
        arg = arg.lstrip()
        if command in ("file", "load", "save", "attach"):
            yield from self.paths.get_completions(Document(arg, len(arg)), complete_event)
            return
        words = arg.split(" ")
        word, earlier = words[-1], words[:-1]
        if command == "model" and not earlier:
            choices = self.session.model_choices()
        elif command == "tools":
            names = list(available_tool_names())
            choices = (["on", "off"] + names) if not earlier else [n for n in names if n not in earlier]
        elif command == "option" and not earlier:
            choices = list(dict.fromkeys(list(self.session.settings.option_dict()) + list(COMMON_OPTIONS)))
        elif command == "reasoning" and not earlier:
            choices = ["on", "off"]
        else:
            return
        for choice in choices:
            if choice.startswith(word):
                yield Completion(choice, start_position=-len(word))


# ------------------------------------------------------------------------------------------------
# the terminal loop


def run_repl(settings: Settings, first_message: Optional[str] = None, history: Optional[List[dict]] = None,
             vi_mode: Optional[bool] = None, show_reasoning: Optional[bool] = None, raw: bool = False,
             continued: Optional[Tuple[str, List[dict]]] = None, log_enabled: bool = False) -> int:
    """Read, send, stream, repeat. Returns 0 for /exit or Ctrl-D.

    SIGTERM (cli.Terminated) ends the loop, after the stream in progress was closed, as
    `Interrupted("terminated", 143)`: run_cli, the one place that maps exceptions to exit codes,
    prints "llmcli: terminated" and exits 143.
    """
    from ..run.runner import open_mcp

    mcp = None
    try:
        # The MCP servers live as long as the session: started at the first answer, stopped at exit.
        mcp = open_mcp(settings, lambda message: Diagnostics(sys.stderr, color_enabled(sys.stderr)).warning(message))
        return _run_repl(settings, first_message, history, vi_mode, show_reasoning, raw, mcp, continued, log_enabled)
    finally:
        if mcp is not None:
            mcp.close()


def _run_repl(settings, first_message, history, vi_mode, show_reasoning, raw, mcp, continued=None, log_enabled=False):
    from ..run.runner import Terminated, announce_local_model, make_transport

    chat_config = dict(settings.chat)
    if vi_mode is None:
        vi_mode = bool(chat_config.get("vi_mode"))
    if show_reasoning is None:
        show_reasoning = bool(chat_config.get("show_reasoning", True))
    session = ChatSession(settings, history, show_reasoning=show_reasoning)
    session.raw = raw
    session.mcp = mcp
    session.log_enabled = log_enabled
    diag = Diagnostics(sys.stderr, color_enabled(sys.stderr))
    for message in settings.warnings:
        diag.warning(message)
    if continued is not None:
        from ..store.db import Store, db_path

        with Store(db_path(settings.home), create=False) as store:
            exchanges = store.exchanges(continued[0])
        _show(Outcome(session.resume(continued[0], exchanges)), diag, sys.stderr)
    # A transport now, not only per answer: an unusable connection (no base URL, the local extra
    # missing) fails before anything is typed, and the local provider says once which model answers.
    announce_local_model(settings, make_transport(settings, on_fetch=diag.note), diag)
    prompt = _make_prompt(session, vi_mode, diag)
    diag.note(f"llmcli chat ·{session.toolbar_text().rstrip()} for commands · Ctrl-D exits")
    pending = first_message
    while True:
        try:
            if pending is not None:
                outcome, pending = session.add_user_message(pending), None
            else:
                try:
                    line = prompt.prompt(PROMPT)
                except EOFError:
                    return ExitStatus.OK
                outcome = session.submit(line)
            _show(outcome, diag, sys.stderr)
            if outcome.exit:
                return ExitStatus.OK
            if outcome.compact:
                diag.note(session.compact())
            if outcome.send:
                stream_answer(session, diag)
                if session.should_auto_compact():
                    diag.note("llmcli: the conversation reached chat.auto_compact; " + session.compact())
        except LLMCliError as exc:
            diag.error(str(exc))
        except KeyboardInterrupt as exc:
            if isinstance(exc, Terminated):
                # As run_ask does: click would turn a KeyboardInterrupt into "Abort" (130).
                raise Interrupted("terminated", ExitStatus.TERMINATED) from None
            # Ctrl-C at the prompt clears the line; anywhere else outside a stream, back to the prompt.


def stream_answer(session: ChatSession, diag: Diagnostics, out=None, err=None) -> None:
    """One run: stream it to the terminal, then put what happened into the conversation.

    Ctrl-C stops the answer and keeps it (marked); an LLMCliError prints one line; a SIGTERM
    (cli.Terminated) closes the stream the same way, then propagates so that the REPL exits with 143.
    """
    from ..run.runner import RunWiring, Terminated

    out = out or sys.stdout
    err = err or sys.stderr
    settings = session.settings
    # Markdown is styled on a terminal unless the config says `chat: {render: false}` (issue 7).
    render = bool(dict(settings.chat).get("render", True))
    renderer = TextRenderer(out, err, isatty(out), isatty(err), color_enabled(err),
                            show_reasoning=session.show_reasoning, show_usage=True, render_markdown=render,
                            raw=getattr(session, "raw", False))
    from ..run.logrecord import ExchangeLog

    session.prepare(diag)
    log = ExchangeLog(settings, session.messages, "chat", conversation_id=session.conversation_id,
                      enabled=session.log_enabled, files=session.turn_files or None,
                      attachments=session.turn_attachments or None)
    session.turn_files, session.turn_attachments = [], []  # a retry or the next answer carries none
    wiring = RunWiring(settings, session.messages, diag, err, budget=session.budget, mcp=getattr(session, "mcp", None))
    _sigint_raises()
    error, stopped = wiring.drive(renderer)
    session.finish_turn(wiring.run, error, interrupted=stopped is not None)
    if error is not None:
        from ..run.prepare import explain_rejection

        error = explain_rejection(error, wiring.run.messages)
    if stopped is not None:
        status = ExitStatus.TERMINATED if isinstance(stopped, Terminated) else ExitStatus.INTERRUPTED
    else:
        status = error.exit_status if error is not None else ExitStatus.OK
    warnings = []
    if log.finish(wiring.run, error, exit_status=status, interrupted=stopped is not None, warn=warnings.append):
        session.conversation_id = log.conversation_id
    elif warnings and not getattr(session, "log_warned", False):
        session.log_warned = True  # once per session, not after every answer
        diag.warning(warnings[0] + " (said once per chat)")
    renderer.finish(wiring.run, error)
    if error is not None:
        diag.error(str(error))
    wiring.after(error)
    if stopped is not None:
        if isinstance(stopped, Terminated):
            raise stopped
        diag.note("[interrupted]")


def _show(outcome: Outcome, diag: Diagnostics, err) -> None:
    for message in outcome.warnings:
        diag.warning(message)
    if outcome.text:
        err.write(diag.clean(outcome.text) + "\n")
        err.flush()


def _sigint_raises() -> None:
    """SIGINT must raise KeyboardInterrupt while streaming (prompt_toolkit swaps handlers during input)."""
    try:
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread (embedded use): nothing to do
        pass


def _make_prompt(session: ChatSession, vi_mode: bool, diag: Diagnostics):
    from prompt_toolkit import PromptSession
    from prompt_toolkit.enums import EditingMode
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    # Enter sends (multiline=False); Alt+Enter — which terminals send as Esc Enter — inserts a newline.
    # This replaces prompt_toolkit's emacs binding of Esc Enter to accept-line: user bindings win.
    @bindings.add("escape", "enter")
    def _newline(event):
        event.current_buffer.insert_text("\n")

    history = InMemoryHistory()
    if session.settings.home:
        try:
            os.makedirs(session.settings.home, exist_ok=True)
            history = FileHistory(os.path.join(session.settings.home, HISTORY_FILE))
        except OSError as exc:
            diag.warning(f"input history is not saved: cannot create {session.settings.home}: "
                         f"{exc.strerror or exc}")
    return PromptSession(
        history=history,
        multiline=False,
        key_bindings=bindings,
        editing_mode=EditingMode.VI if vi_mode else EditingMode.EMACS,
        completer=ReplCompleter(session),
        complete_while_typing=False,
        bottom_toolbar=session.toolbar_text,
        prompt_continuation=lambda width, line_number, is_soft_wrap: "." * (width - 1) + " ",
    )
