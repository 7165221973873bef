"""The context window: how big the model's window is, how much the messages take, and what to do
when they do not fit (refuse, or `--truncate oldest`), plus the pieces of chat's `/compact`.

Token counts are estimates (no tokenizer is imported: start-up time matters and exact counts differ
by model): about 3.5 UTF-8 bytes per token for text, with non-ASCII text counted heavier, 4 tokens of
framing per message, and fixed amounts for images, files and audio. They err on the high side, so a
request that passes the check fits.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ..errors import InputError
from ..events import Value

PER_MESSAGE_TOKENS = 4
IMAGE_TOKENS = 1_000
AUDIO_TOKENS = 2_000
BYTES_PER_TOKEN = 3.5
MIN_WINDOW = 4_096  # below this many estimated tokens, no model's window is at risk

# Well-known windows (tokens), matched by prefix of the model name without its provider part.
# Longest prefix wins. Approximate on purpose; config `context_length` overrides.
KNOWN_WINDOWS = (
    ("gpt-4.1", 1_047_576), ("gpt-4o", 128_000), ("gpt-4-turbo", 128_000), ("gpt-4", 8_192),
    ("gpt-3.5-turbo", 16_385), ("gpt-5", 400_000), ("o1", 200_000), ("o3", 200_000), ("o4-mini", 200_000),
    ("claude", 200_000), ("gemini-1.5", 1_048_576), ("gemini-2", 1_048_576), ("deepseek-chat", 65_536),
    ("deepseek-reasoner", 65_536), ("llama-3.1", 131_072), ("llama-3.2", 131_072), ("llama-3.3", 131_072),
    ("meta-llama/llama-3", 131_072), ("mistral-large", 131_072), ("mistral-small", 32_768),
    ("qwen2.5", 32_768), ("smollm2", 8_192),
)


def _text_tokens(text: str) -> int:
    if not text:
        return 0
    # len(encode) - len(text) is the number of extra UTF-8 bytes: CJK and the like tokenise denser.
    extra = len(text.encode("utf-8", "surrogatepass")) - len(text)
    return int((len(text) + 2 * extra) / BYTES_PER_TOKEN) + 1


def _part_tokens(part) -> int:
    if not isinstance(part, dict):
        return _text_tokens(str(part))
    kind = part.get("type")
    if kind == "text":
        return _text_tokens(str(part.get("text") or ""))
    if kind == "image_url":
        return IMAGE_TOKENS
    if kind == "input_audio":
        return AUDIO_TOKENS
    if kind == "file":
        data = str((part.get("file") or {}).get("file_data") or "")
        # A PDF is read as text and page images by the provider: size-proportional, roughly.
        return max(IMAGE_TOKENS, len(data) // 8)
    return _text_tokens(str(part))


def message_tokens(message: dict) -> int:
    tokens = PER_MESSAGE_TOKENS
    content = message.get("content")
    if isinstance(content, str):
        tokens += _text_tokens(content)
    elif isinstance(content, list):
        tokens += sum(_part_tokens(p) for p in content)
    for call in message.get("tool_calls") or ():
        fn = (call or {}).get("function") or {}
        tokens += _text_tokens(str(fn.get("name") or "")) + _text_tokens(str(fn.get("arguments") or "")) + 4
    if message.get("name"):
        tokens += 1
    return tokens


def estimate_tokens(messages: Sequence[dict]) -> int:
    """Approximate prompt tokens of a message list (fast: one pass, no tokenizer)."""
    return sum(message_tokens(m) for m in messages) + 3


def known_window(model: Optional[str]) -> Optional[int]:
    if not model:
        return None
    name = model.lower()
    candidates = [name, name.split("/", 1)[-1], name.rsplit("/", 1)[-1]]
    if name.endswith(".gguf"):
        candidates.append(name.rsplit("/", 1)[-1])
    best = None
    for prefix, window in KNOWN_WINDOWS:
        if any(c.startswith(prefix) for c in candidates) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, window)
    return best[1] if best else None


def window_from_models(items: Sequence[dict], model: Optional[str]) -> Optional[int]:
    """The window a `/models` listing states for `model` (OpenRouter context_length, vLLM max_model_len,
    Groq context_window, llama.cpp meta.n_ctx_train / n_ctx); with one model listed, that one's."""
    chosen = [i for i in items if isinstance(i, dict) and model and i.get("id") == model]
    if not chosen and len(items) == 1 and isinstance(items[0], dict):
        chosen = list(items)
    for item in chosen:
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        top = item.get("top_provider") if isinstance(item.get("top_provider"), dict) else {}
        for value in (item.get("context_length"), item.get("max_model_len"), item.get("context_window"),
                      top.get("context_length"), meta.get("n_ctx"), meta.get("n_ctx_train")):
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def answer_budget(window: int, options: dict) -> int:
    """Tokens kept free for the answer: max_tokens when set, else a quarter of the window (at most 4,096)."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = options.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, window // 2)
    return min(window // 4, 4_096)


class WindowCheck(Value):
    """What `fit_messages` found and did, for `--json` (`context`) and the notes on stderr."""

    __slots__ = ("tokens", "limit", "window", "window_source", "dropped_turns", "dropped_messages", "tokens_before")
    tokens: int  # estimated prompt tokens as sent
    limit: Optional[int]  # the input limit applied (None: unknown, nothing checked)
    window: Optional[int]
    window_source: Optional[str]
    dropped_turns: int
    dropped_messages: int
    tokens_before: Optional[int]

    def __init__(self, tokens: int, limit: Optional[int], window: Optional[int] = None,
                 window_source: Optional[str] = None, dropped_turns: int = 0, dropped_messages: int = 0,
                 tokens_before: Optional[int] = None):
        self.tokens = tokens
        self.limit = limit
        self.window = window
        self.window_source = window_source
        self.dropped_turns = dropped_turns
        self.dropped_messages = dropped_messages
        self.tokens_before = tokens_before

    def to_dict(self) -> dict:
        return {"estimated_tokens": self.tokens, "input_limit": self.limit, "window": self.window,
                "window_source": self.window_source, "truncated_turns": self.dropped_turns,
                "truncated_messages": self.dropped_messages}


def turns(messages: Sequence[dict]) -> List[Tuple[int, int]]:
    """(start, end) index ranges of the turns after the leading system messages: a turn starts at a user
    message and holds everything up to the next one (answers, tool calls and their results)."""
    start = 0
    while start < len(messages) and messages[start].get("role") in ("system", "developer"):
        start += 1
    bounds = [i for i in range(start, len(messages)) if messages[i].get("role") == "user"]
    if not bounds or bounds[0] != start:
        bounds.insert(0, start)
    ranges = []
    for k, b in enumerate(bounds):
        end = bounds[k + 1] if k + 1 < len(bounds) else len(messages)
        if b < end:
            ranges.append((b, end))
    return ranges


def fit_messages(messages: List[dict], limit: Optional[int], truncate: Optional[str] = None,
                 window: Optional[int] = None, window_source: Optional[str] = None) -> Tuple[List[dict], WindowCheck]:
    """Check the messages against `limit` tokens; over it, refuse (InputError, exit 3) with the numbers,
    or with truncate='oldest' drop whole oldest turns — never the system prompt, never the last turn
    (which holds the last user message)."""
    per = [message_tokens(m) for m in messages]
    total = sum(per) + 3
    check = WindowCheck(total, limit, window, window_source)
    if limit is None or total <= limit:
        return messages, check
    where = f"the input limit of {limit:,} tokens" + (f" (window {window:,} from {window_source}, minus the answer "
                                                     f"budget)" if window and window_source else "")
    if truncate != "oldest":
        raise InputError(f"the request is about {total:,} tokens, over {where}; shorten the history, "
                         "or pass --truncate oldest to drop the oldest turns")
    ranges = turns(messages)
    drop_upto = None
    remaining = total
    for k, (b, e) in enumerate(ranges[:-1]):
        remaining -= sum(per[b:e])
        drop_upto = k
        if remaining <= limit:
            break
    if remaining > limit or drop_upto is None:
        raise InputError(f"the request is about {total:,} tokens, over {where}, and dropping every older turn "
                         f"still leaves about {remaining:,}: the system prompt and the last message alone are "
                         "too long")
    head = ranges[0][0]
    cut_end = ranges[drop_upto][1]
    kept = messages[:head] + messages[cut_end:]
    check.tokens_before = total
    check.tokens = remaining
    check.dropped_turns = drop_upto + 1
    check.dropped_messages = cut_end - head
    return kept, check


# -- /compact -------------------------------------------------------------------------------------

SUMMARY_INSTRUCTION = (
    "Summarise the conversation above for your own later use: the facts, decisions, names, numbers, open "
    "questions and what the user wants, as compact notes. Write only the summary.")
SUMMARY_PREFIX = "[Summary of the earlier conversation]\n"
SUMMARY_ACK = "Understood: I have the summary of our earlier conversation."


def compaction_split(messages: List[dict], keep_turns: int = 1):
    """(system messages, older messages to summarise, kept recent messages), or None if nothing to do."""
    ranges = turns(messages)
    if len(ranges) <= keep_turns:
        return None
    head = ranges[0][0]
    cut = ranges[-keep_turns][0] if keep_turns else len(messages)
    return messages[:head], messages[head:cut], messages[cut:]


def summary_request(system: List[dict], older: List[dict]) -> List[dict]:
    """The messages of the summary request: the old turns, then the instruction as the last user turn."""
    return list(system) + list(older) + [{"role": "user", "content": SUMMARY_INSTRUCTION}]


def compacted(system: List[dict], summary: str, kept: List[dict]) -> List[dict]:
    """The conversation after /compact: system, the summary as a user/assistant pair, the kept turns."""
    return list(system) + [{"role": "user", "content": SUMMARY_PREFIX + summary.strip()},
                           {"role": "assistant", "content": SUMMARY_ACK}] + list(kept)
