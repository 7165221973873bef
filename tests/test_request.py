"""What goes into the request (issue 17): attachments, histories from anywhere, hygiene, the context
window — checked in the request bodies that a real local server records."""

import base64
import hashlib
import json
import os
import struct
import zlib

import pytest

from conftest import invoke
from localserver import Reply, text_stream
from llmcli.prompt import attach, context, hygiene, transcripts

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "histories")
ANSWER = text_stream("ok")


def fixture(name):
    return os.path.join(FIXTURES, name)


def png_bytes():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40 + b"\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8 " + b"\x00" * 18
WAV = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80>\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + b"\xff\xfb\x90\x00" + b"\x00" * 30


def pdf_with_text(text="Hello PDF"):
    """A one-page PDF whose page shows `text` in Helvetica (offsets computed, so pypdf reads it)."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def sent(server):
    return server.requests[-1].json["messages"]


def decode_data_url(url):
    head, _, data = url.partition(",")
    assert head.endswith(";base64")
    return head[5:-7], base64.b64decode(data)


# -- attachments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data,media_type", [(png_bytes(), "image/png"), (JPEG, "image/jpeg"),
                                             (GIF, "image/gif"), (WEBP, "image/webp")])
def test_image_attachment_is_a_data_url_that_decodes_to_the_bytes(server, llmcli, tmp_path, data, media_type):
    path = tmp_path / "picture.bin"  # the name says nothing: the bytes decide
    path.write_bytes(data)
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("-a", path, "what is this?")
    assert result.exit_code == 0, result.stderr
    content = sent(server)[-1]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert content[1]["type"] == "image_url" and set(content[1]) == {"type", "image_url"}
    got_type, got = decode_data_url(content[1]["image_url"]["url"])
    assert (got_type, got) == (media_type, data)


def test_pdf_is_a_file_part_and_audio_is_input_audio(server, llmcli, tmp_path):
    pdf, wav, mp3 = tmp_path / "report.pdf", tmp_path / "a.wav", tmp_path / "b.mp3"
    pdf.write_bytes(pdf_with_text())
    wav.write_bytes(WAV)
    mp3.write_bytes(MP3)
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("-a", pdf, "-a", wav, "--attach", mp3, "summarise")
    assert result.exit_code == 0, result.stderr
    parts = sent(server)[-1]["content"]
    assert [p["type"] for p in parts] == ["text", "file", "input_audio", "input_audio"]
    assert parts[1]["file"]["filename"] == "report.pdf" and set(parts[1]["file"]) == {"filename", "file_data"}
    assert decode_data_url(parts[1]["file"]["file_data"]) == ("application/pdf", pdf.read_bytes())
    assert parts[2]["input_audio"] == {"data": base64.b64encode(WAV).decode(), "format": "wav"}
    assert parts[3]["input_audio"]["format"] == "mp3"
    assert base64.b64decode(parts[3]["input_audio"]["data"]) == MP3


def test_pdf_text_sends_the_extracted_text_as_a_fenced_block(server, llmcli, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(pdf_with_text("Quarterly numbers went up"))
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("-a", pdf, "--pdf-text", "summarise")
    assert result.exit_code == 0, result.stderr
    content = sent(server)[-1]["content"]
    assert isinstance(content, str)
    assert content.startswith(f"{pdf}:\n```\n") and "Quarterly numbers went up" in content
    assert content.endswith("```\n\nsummarise")


def test_attachment_from_stdin_and_json_records_name_type_size_sha256(server, llmcli):
    data = png_bytes()
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("-a", "-", "--json", "describe", input=data)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["attachments"] == [{"name": "stdin", "type": "image/png", "size": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest()}]
    assert "base64" not in result.stdout
    assert decode_data_url(sent(server)[-1]["content"][1]["image_url"]["url"])[1] == data


def test_url_attachment_is_passed_through(server, llmcli):
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("-a", "https://example.com/cat.png", "what is it?")
    assert result.exit_code == 0, result.stderr
    assert sent(server)[-1]["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def test_inline_url_to_a_private_address_is_refused_without_the_flag(server, llmcli):
    server.route("/cat.png", Reply(pieces=[png_bytes()], content_type="image/png", chunked=False), method="GET")
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("-a", server.url + "/cat.png", "--attach-inline", "what is it?")
    assert result.exit_code == 3
    assert "private" in result.stderr and "--allow-private-urls" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(r.path == "/cat.png" for r in server.requests)
    assert not any(r.path.endswith("/chat/completions") for r in server.requests)


def test_inline_url_downloads_through_the_fetcher_when_allowed(server, llmcli):
    data = png_bytes()
    server.route("/cat.png", Reply(pieces=[data], content_type="image/png", chunked=False), method="GET")
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("-a", server.url + "/cat.png", "--attach-inline", "--allow-private-urls", "what is it?")
    assert result.exit_code == 0, result.stderr
    assert decode_data_url(sent(server)[-1]["content"][1]["image_url"]["url"]) == ("image/png", data)


def test_a_text_file_is_not_an_attachment(llmcli, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just text")
    result = llmcli("-a", path, "hi")
    assert result.exit_code == 3
    assert "not an image, PDF or audio file" in result.stderr and "-f" in result.stderr


def test_an_oversized_image_is_refused_with_the_limit_named(monkeypatch, tmp_path):
    monkeypatch.setattr(attach, "MAX_IMAGE_BYTES", 100)
    big = png_bytes() + b"\x00" * 200
    with pytest.raises(Exception) as info:
        attach.from_bytes("big.png", big)
    assert "100-byte limit for images" in str(info.value) and f"{len(big):,} bytes" in str(info.value)


def test_server_rejecting_images_is_one_line_and_exit_4(server, llmcli, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    body = {"error": {"message": "Invalid content type. image_url is only supported by certain models.",
                      "type": "invalid_request_error"}}
    server.chat(Reply(status=400, pieces=[json.dumps(body).encode()], content_type="application/json",
                      chunked=False))
    result = llmcli("-a", path, "what?", "--retries", "0")
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "refused the attachments" in lines[0] and "image_url is only supported" in lines[0]


# -- histories from anywhere -----------------------------------------------------------------------


def test_speaker_transcript_keeps_names_and_as_marks_the_assistant(server, llmcli):
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("--history", fixture("groupchat.txt"), "--as", "helper", "and now?")
    assert result.exit_code == 0, result.stderr
    assert sent(server) == [
        {"role": "user", "name": "alice", "content": "Has anyone tried the new release?\nIt has a lot of changes."},
        {"role": "user", "name": "bob", "content": "Yes. Note: the config moved."},
        {"role": "assistant", "content": "The config now lives in ~/.config."},
        {"role": "user", "content": "[Carol Jones]: thanks!"},
        {"role": "user", "content": "and now?"},
    ]


def test_plain_labels_and_multi_line_turns():
    messages = transcripts.load_any(fixture("plain.txt"), "auto", "bob")
    assert messages == [
        {"role": "user", "name": "alice", "content": "hi there"},
        {"role": "assistant", "content": "hello alice\nhow are you?"},
        {"role": "user", "name": "alice", "content": "fine. Note: this stays in alice's turn"},
        {"role": "assistant", "content": "good"},
    ]


def test_markdown_transcript_ignores_headings_inside_fences():
    messages = transcripts.load_any(fixture("chat.md"))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "4\n\n```\n## user\n(inside a fence: not a heading)\n```"


def test_llm_logs_json_in_time_order():
    assert transcripts.load_any(fixture("llm-logs.json")) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "And in French?"}, {"role": "assistant", "content": "Bonjour"},
    ]


def test_aichat_session_yaml():
    messages = transcripts.load_any(fixture("aichat-session.yaml"))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[3]["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert messages[4]["content"] == "A cat."


def test_openai_formats_still_detected(tmp_path):
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    (tmp_path / "h.json").write_text(json.dumps(msgs))
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(m) + "\n" for m in msgs))
    (tmp_path / "h.yaml").write_text("- role: user\n  content: a\n- role: assistant\n  content: b\n")
    for name in ("h.json", "h.jsonl", "h.yaml"):
        assert transcripts.load_any(str(tmp_path / name)) == msgs


def test_forced_format_and_a_file_fitting_none(llmcli, tmp_path):
    result = llmcli("--history", fixture("broken.txt"), "hi")
    assert result.exit_code == 3
    assert "broken.txt:2:" in result.stderr and "this line has no speaker label" in result.stderr
    result = llmcli("--history", fixture("chat.md"), "--history-format", "transcript", "hi")
    assert result.exit_code == 3 and "chat.md:1:" in result.stderr and "## system" in result.stderr


# -- hygiene ---------------------------------------------------------------------------------------


def call(cid, name="f"):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": "{}"}}


def test_hygiene_drops_a_call_without_result_and_a_result_without_call():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "tool", "tool_call_id": "zzz", "content": "stray"},
        {"role": "user", "content": "next"},
    ]
    cleaned, report = hygiene.clean_messages(messages)
    assert cleaned == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call("a")]},
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "user", "content": "next"},
    ]
    assert report.counts["dropped_tool_calls"] == 1 and report.counts["dropped_tool_results"] == 1
    assert messages[1]["tool_calls"] == [call("a"), call("b")]  # the input is not changed


def test_hygiene_repeated_call_id_keeps_the_latest():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "first try", "tool_calls": [call("x", "old")]},
        {"role": "tool", "tool_call_id": "x", "content": "old result"},
        {"role": "assistant", "content": "", "tool_calls": [call("x", "new")]},
        {"role": "tool", "tool_call_id": "x", "content": "new result"},
    ]
    cleaned, report = hygiene.clean_messages(messages)
    assert cleaned == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "first try"},
        {"role": "assistant", "content": "", "tool_calls": [call("x", "new")]},
        {"role": "tool", "tool_call_id": "x", "content": "new result"},
    ]
    assert report.counts["repeated_call_ids"] == 2


def test_hygiene_empty_messages_and_consecutive_duplicate_answers():
    messages = [
        {"role": "system", "content": "s"}, {"role": "user", "content": "  "}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "same"}, {"role": "assistant", "content": "same"},
        {"role": "user", "content": [{"type": "text", "text": ""}]}, {"role": "user", "content": "q2"},
    ]
    cleaned, report = hygiene.clean_messages(messages)
    assert [m["content"] for m in cleaned] == ["s", "q", "same", "q2"]
    assert report.counts["dropped_empty"] == 2 and report.counts["dropped_duplicates"] == 1


def test_hygiene_moves_a_late_result_up_to_answer_before_the_next_user_turn():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call("a")]},
        {"role": "assistant", "content": "thinking aloud"},
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "user", "content": "next"},
    ]
    cleaned, report = hygiene.clean_messages(messages)
    assert [m.get("tool_call_id") or m["content"] for m in cleaned] == ["q", "", "a", "thinking aloud", "next"]
    assert report.counts["moved_tool_results"] == 1


def test_hygiene_reasoning_only_with_the_switch():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "reasoning": "because", "reasoning_content": "x"}]
    cleaned, report = hygiene.clean_messages(messages)
    assert cleaned[1] == {"role": "assistant", "content": "a"} and report.counts["stripped_reasoning"] == 1
    cleaned, report = hygiene.clean_messages([messages[0], {"role": "assistant", "content": "a", "reasoning": "r"}],
                                             reattach_reasoning=True)
    assert cleaned[1] == {"role": "assistant", "content": "a", "reasoning_content": "r"}


def test_orphaned_tool_call_history_is_accepted_after_cleaning(server, llmcli):
    """A server that, like OpenAI, answers 400 to a call without its result gets a valid history."""

    def strict(handler, rec):
        msgs = rec.json["messages"]
        for i, m in enumerate(msgs):
            for c in m.get("tool_calls") or ():
                answered = any(x.get("tool_call_id") == c["id"] for x in msgs[i + 1:])
                if not answered:
                    handler.play(Reply(status=400, pieces=[b'{"error": {"message": "tool_calls must be '
                                                           b'followed by tool messages"}}'],
                                       content_type="application/json", chunked=False), rec)
                    return
        handler.play(Reply(pieces=ANSWER), rec)

    server.chat(strict)
    result = llmcli("--history", fixture("orphaned-tool-call.json"), "--json", "--debug", "thanks")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["content"] == "ok" and doc["hygiene"]["dropped_tool_calls"] == 1
    assert doc["hygiene"]["dropped_empty"] == 1  # the assistant message had nothing left
    assert "hygiene: assistant message 2: tool call 'call_1' has no result" in result.stderr
    assert [m["role"] for m in sent(server)] == ["user", "user", "user"]


# -- the context window ----------------------------------------------------------------------------


def long_history(turns=30, size=400):
    messages = [{"role": "system", "content": "be brief"}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} " + "x" * size})
        messages.append({"role": "assistant", "content": f"answer {i} " + "y" * size})
    return messages


def test_over_the_limit_ask_exits_3_with_the_numbers(server, llmcli, tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps(long_history()))
    result = llmcli("--history", path, "--max-input-tokens", "1000", "last question")
    assert result.exit_code == 3
    assert "over the input limit of 1,000 tokens" in result.stderr and "--truncate oldest" in result.stderr
    assert not server.requests


def test_truncate_oldest_keeps_system_and_last_message_and_says_how_many(server, llmcli, tmp_path):
    path = tmp_path / "h.json"
    history = long_history()
    path.write_text(json.dumps(history))
    server.chat(Reply(pieces=ANSWER))
    result = llmcli("--history", path, "--max-input-tokens", "1000", "--truncate", "oldest", "--json", "last question")
    assert result.exit_code == 0, result.stderr
    messages = sent(server)
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert messages[-1] == {"role": "user", "content": "last question"}
    assert messages[1]["role"] == "user"  # whole turns: the kept part starts at a user message
    doc = json.loads(result.stdout)
    dropped = doc["context"]["truncated_turns"]
    assert dropped > 0 and len(messages) == len(history) + 1 - 2 * dropped
    assert f"dropped the {dropped} oldest turns" in result.stderr
    assert context.estimate_tokens(messages) <= 1000


def test_window_from_config_context_length(server, llmcli, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("request:\n  context_length: 2000\n")
    path = tmp_path / "h.json"
    path.write_text(json.dumps(long_history()))
    result = llmcli("--config", cfg, "--history", path, "hi")
    assert result.exit_code == 3
    assert "window 2,000 from config context_length" in result.stderr


def test_window_sources():
    assert context.known_window("gpt-4o-mini") == 128_000
    assert context.known_window("openai/gpt-4o") == 128_000
    assert context.known_window("unknown-model") is None
    items = [{"id": "a", "context_length": 32_000}, {"id": "b", "max_model_len": 8_192}]
    assert context.window_from_models(items, "b") == 8_192
    assert context.window_from_models([{"id": "only", "meta": {"n_ctx_train": 2048}}], None) == 2048


def test_token_estimate_counts_images_flat_not_their_base64():
    text = {"role": "user", "content": "hello world " * 100}
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10**6}}]}
    assert 300 < context.estimate_tokens([text]) < 500
    assert context.estimate_tokens([image]) < 2 * context.IMAGE_TOKENS


@pytest.mark.parametrize("text,words", [("request:\n  reattach_reasoning: maybe\n", "request.reattach_reasoning"),
                                        ("request:\n  context_length: lots\n", "request.context_length"),
                                        ("chat:\n  auto_compact: 2\n", "chat.auto_compact")])
def test_bad_request_config_is_exit_3_naming_the_key(llmcli, tmp_path, text, words):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    result = llmcli("--config", cfg, "hi")
    assert result.exit_code == 3 and words in result.stderr, result


def test_reattach_reasoning_switch_from_config(server, llmcli, tmp_path):
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "r"}]
    path = tmp_path / "h.json"
    path.write_text(json.dumps(history))
    server.chat(Reply(pieces=ANSWER))
    assert llmcli("--history", path, "next").exit_code == 0
    assert "reasoning_content" not in sent(server)[1]
    cfg = tmp_path / "config.yaml"
    cfg.write_text("request:\n  reattach_reasoning: true\n")
    assert llmcli("--config", cfg, "--history", path, "next").exit_code == 0
    assert sent(server)[1]["reasoning_content"] == "r"


def test_a_400_that_does_not_name_the_attachments_says_they_were_sent(server, llmcli, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes())
    server.chat(Reply(status=400, pieces=[b'{"error": {"message": "temperature must be at most 2"}}'],
                      content_type="application/json", chunked=False))
    result = llmcli("-a", path, "what?", "--retries", "0")
    assert result.exit_code == 4
    line, = result.stderr.strip().splitlines()
    assert "temperature must be at most 2" in line and "the request carried attachments" in line
    assert "refused the attachments" not in line


def test_a_pdf_url_needs_attach_inline(llmcli):
    result = llmcli("-a", "https://example.com/report.pdf", "summarise")
    assert result.exit_code == 3 and "--attach-inline" in result.stderr


def test_save_after_truncation_keeps_the_dropped_turns(server, llmcli, tmp_path):
    path = tmp_path / "h.json"
    history = long_history()
    path.write_text(json.dumps(history))
    server.chat(Reply(pieces=ANSWER))
    saved = tmp_path / "out.json"
    result = llmcli("--history", path, "--max-input-tokens", "1000", "--truncate", "oldest", "--save", saved, "last")
    assert result.exit_code == 0, result.stderr
    assert len(sent(server)) < len(history)
    assert json.loads(saved.read_text()) == history + [{"role": "user", "content": "last"},
                                                       {"role": "assistant", "content": "ok"}]


def test_transcript_timestamps_and_markdown_titles(tmp_path):
    chat = tmp_path / "export.txt"
    chat.write_text("[12:01] alice: hi\n12/01/2024, 10:02 - bob: hello\nsecond line\n[10:03 PM] [alice]: bye\n")
    assert transcripts.load_any(str(chat), assistant_name="bob") == [
        {"role": "user", "name": "alice", "content": "hi"},
        {"role": "assistant", "content": "hello\nsecond line"},
        {"role": "user", "name": "alice", "content": "bye"},
    ]
    md = tmp_path / "notes.md"
    md.write_text("# Our chat\n\n## User\nq\n\n## Assistant\na\n")
    assert transcripts.load_any(str(md)) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_a_whatsapp_style_export_is_detected(tmp_path):
    chat = tmp_path / "export.txt"
    chat.write_text("12/01/2024, 10:02 - bob: hello\n12/01/2024, 10:03 - alice: hi bob\n")
    assert [m.get("name") for m in transcripts.load_any(str(chat))] == ["bob", "alice"]
