"""`llmcli complete`: the legacy /completions endpoint against the local test server, each stream fed
three ways (as written, in one write, one byte per write)."""

import json

import pytest

from conftest import invoke
from localserver import Reply, split_three_ways, sse


def tc(text="", index=0, finish=None, token_ids=None, logprobs=None, **extra):
    choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
    if token_ids is not None:
        choice["token_ids"] = token_ids
    choice.update(extra)
    return {"id": "cmpl-1", "object": "text_completion", "model": "base-model", "choices": [choice]}


USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def usage_chunk():
    return {"id": "cmpl-1", "object": "text_completion", "model": "base-model", "choices": [], "usage": USAGE}


def complete(server, *args, **kwargs):
    return invoke("complete", "--base-url", server.base_url, *args, **kwargs)


def route(server, pieces, way="as_written"):
    server.route("/v1/completions", Reply(pieces=split_three_ways(pieces)[way]))


def sent(server):
    return [q for q in server.requests if q.path == "/v1/completions"][-1].json


def test_text_prompt_streams_choice_text(server, way):
    route(server, sse(tc(" Paris"), tc(","), tc(" France", finish="stop"), usage_chunk()), way)
    r = complete(server, "The capital of France is", "--max-tokens", "3")
    assert r.exit_code == 0, r
    assert r.stdout == " Paris, France\n"
    body = sent(server)
    assert body["prompt"] == "The capital of France is" and body["stream"] is True
    assert body["max_tokens"] == 3 and "messages" not in body


def test_token_id_prompt_and_return_token_ids_json(server, way):
    route(server, sse(tc(" a", token_ids=[264]), tc(" b", token_ids=[293], finish="length",
                                                   prompt_token_ids=[1, 2, 3]), usage_chunk()), way)
    r = complete(server, "--token-ids", "1,2,3", "--return-token-ids", "--json")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["text"] == " a b" and doc["finish_reason"] == "length" and doc["usage"] == USAGE
    assert doc["token_ids"] == [264, 293] and doc["prompt_token_ids"] == [1, 2, 3]
    assert doc["error"] is None
    body = sent(server)
    assert body["prompt"] == [1, 2, 3] and body["return_token_ids"] is True


def test_token_ids_file(server, tmp_path):
    route(server, sse(tc("x", finish="stop")))
    f = tmp_path / "ids.json"
    f.write_text("[5, 6,\n 7]")
    r = complete(server, "--token-ids-file", str(f))
    assert r.exit_code == 0, r
    assert sent(server)["prompt"] == [5, 6, 7]


@pytest.mark.parametrize("ids", ["1,x,3", "", "-1"])
def test_bad_token_ids_are_a_usage_error(server, ids):
    r = complete(server, "--token-ids", ids)
    assert r.exit_code == 2, r
    assert "--token-ids" in r.stderr and not server.requests


def test_token_ids_with_words_is_a_usage_error(server):
    r = complete(server, "--token-ids", "1", "words")
    assert r.exit_code == 2 and not server.requests


def test_n_2_json_lists_choices_and_text_prints_choice_0(server, way):
    pieces = sse(tc("A1", 0), tc("B1", 1), tc("A2", 0, finish="stop"), tc("B2", 1, finish="length"), usage_chunk())
    route(server, pieces, way)
    r = complete(server, "-n", "2", "--json", "go")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert [(c["index"], c["text"], c["finish_reason"]) for c in doc["choices"]] == [
        (0, "A1A2", "stop"), (1, "B1B2", "length")]
    assert doc["text"] == "A1A2" and sent(server)["n"] == 2
    route(server, pieces)
    r = complete(server, "-n", "2", "go")
    assert r.stdout == "A1A2\n" and "--json lists every choice" in r.stderr


LOGPROBS_1 = {"tokens": [" Hi"], "token_logprobs": [-0.1], "top_logprobs": [{" Hi": -0.1, " Yo": -2.5}],
              "text_offset": [0]}
LOGPROBS_2 = {"tokens": ["!"], "token_logprobs": [-0.7], "top_logprobs": [{"!": -0.7, ".": -0.9}],
              "text_offset": [3]}


def test_logprobs_merged_in_json_and_per_chunk_in_jsonl(server, way):
    pieces = sse(tc(" Hi", logprobs=LOGPROBS_1, token_ids=[10]), tc("!", finish="stop", logprobs=LOGPROBS_2,
                                                                     token_ids=[11]), usage_chunk())
    route(server, pieces, way)
    r = complete(server, "--logprobs", "2", "--json", "hello")
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)
    assert doc["logprobs"]["tokens"] == [" Hi", "!"] and doc["logprobs"]["token_logprobs"] == [-0.1, -0.7]
    assert len(doc["logprobs"]["top_logprobs"]) == 2
    assert sent(server)["logprobs"] == 2
    route(server, pieces, way)
    r = complete(server, "--logprobs", "2", "--jsonl", "hello")
    assert r.exit_code == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    chunks = [e for e in events if e["type"] == "chunk"]
    assert chunks[0] == {"type": "chunk", "index": 0, "text": " Hi", "token_ids": [10], "logprobs": LOGPROBS_1}
    assert chunks[1]["finish_reason"] == "stop" and chunks[1]["token_ids"] == [11]
    assert events[-1]["type"] == "done" and events[-1]["usage"] == USAGE


def test_echo_and_stop_and_extras_are_sent(server, way):
    route(server, sse(tc("Say"), tc(" hi"), tc(" there", finish="stop")), way)
    r = complete(server, "--echo", "--stop", "\n", "--stop", "END", "--top-k", "5", "--min-p", "0.1",
                 "--repetition-penalty", "1.2", "--stop-token-ids", "2,32000", "--skip-special-tokens",
                 "--priority", "3", "-o", "seed", "7", "Say")
    assert r.exit_code == 0, r
    assert r.stdout == "Say hi there\n"
    body = sent(server)
    assert body["echo"] is True and body["stop"] == ["\n", "END"]
    assert (body["top_k"], body["min_p"], body["repetition_penalty"], body["stop_token_ids"],
            body["skip_special_tokens"], body["priority"], body["seed"]) == (5, 0.1, 1.2, [2, 32000], True, 3, 7)


def test_cut_stream_is_a_stream_error_and_keeps_the_text(server, way):
    pieces = sse(tc("partial "), tc("text"), done=False)
    server.route("/v1/completions", Reply(pieces=split_three_ways(pieces)[way], end="cut"))
    r = complete(server, "--json", "go")
    assert r.exit_code == 5, r
    doc = json.loads(r.stdout)
    assert doc["text"] == "partial text" and doc["error"]["type"]


def test_cut_stream_text_mode_keeps_what_was_printed(server):
    server.route("/v1/completions", Reply(pieces=sse(tc("partial"), done=False), end="cut"))
    r = complete(server, "go")
    assert r.exit_code == 5, r
    assert r.stdout.startswith("partial") and "llmcli: error:" in r.stderr


def test_in_stream_error(server, way):
    pieces = sse(tc("so far"), {"error": {"message": "the engine died", "code": 500}})
    route(server, pieces, way)
    r = complete(server, "--jsonl", "go")
    assert r.exit_code == 5, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["text"] == "so far"
    assert events[-1]["type"] == "error" and "the engine died" in events[-1]["error"]["message"]


def test_http_error_and_non_streamed(server):
    server.route("/v1/completions", Reply(status=400, pieces=[b'{"error": {"message": "bad prompt"}}'],
                                          content_type="application/json", chunked=False))
    r = complete(server, "go")
    assert r.exit_code == 4 and "bad prompt" in r.stderr
    whole = {"id": "c", "object": "text_completion", "model": "m",
             "choices": [{"index": 0, "text": "whole", "finish_reason": "stop"}], "usage": USAGE}
    server.route("/v1/completions", Reply(pieces=[json.dumps(whole).encode()], content_type="application/json",
                                          chunked=False))
    r = complete(server, "--no-stream", "--json", "go")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["text"] == "whole"
    assert sent(server)["stream"] is False


def test_retry_then_answer(server):
    server.route("/v1/completions", [Reply(status=503, pieces=[b"busy"], content_type="text/plain", chunked=False),
                                     Reply(pieces=sse(tc("ok", finish="stop")))])
    r = invoke("complete", "--base-url", server.base_url, "go", env={"LLMCLI_RETRY_BASE_DELAY": "0.01"})
    assert r.exit_code == 0, r
    assert r.stdout == "ok\n" and len([q for q in server.requests if q.path == "/v1/completions"]) == 2


def test_prompt_from_stdin_and_file(server, tmp_path):
    route(server, sse(tc("x", finish="stop")))
    f = tmp_path / "a.txt"
    f.write_text("file text\n")
    r = complete(server, "-f", str(f), "tail words", input="piped\n")
    assert r.exit_code == 0, r
    prompt = sent(server)["prompt"]
    assert "file text" in prompt and "piped" in prompt and prompt.endswith("tail words")


def test_debug_names_the_endpoint_payload_size_and_time_to_headers(server):
    route(server, sse(tc("ok", finish="stop")))
    r = complete(server, "--debug", "--api-key", "sk-complete-secret-99", "go")
    assert r.exit_code == 0, r
    size = len([q for q in server.requests if q.path == "/v1/completions"][-1].body)
    assert f"POST {server.base_url}/completions ({size} bytes sent) → HTTP 200; headers after " in r.stderr
    assert "sk-complete-secret-99" not in r.stderr


def test_a_cut_completion_stream_error_says_what_arrived(server):
    server.route("/v1/completions", Reply(pieces=sse(tc("a"), tc("b"), done=False) + [b'data: {"cho'], end="cut"))
    r = complete(server, "go")
    assert r.exit_code == 5, r
    assert "2 chunks in 2 SSE events received" in r.stderr and 'data: {\\"cho' in r.stderr
