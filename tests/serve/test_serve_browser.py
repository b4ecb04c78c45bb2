"""The chat page of `annotune serve` in a real browser (headless Chromium through Playwright): streamed answers,
multi-turn conversations, switching models, the system prompt, safe Markdown (model output never runs as
markup), errors and API keys; under the server's CSP and with every request outside the server blocked."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import expect
from serve_fixtures import ANSWERS, XSS
from workbench_fixtures import Server

ANSWER_TIMEOUT = 60_000  # ms; a tiny model answers in well under a second, a loaded CI machine may be slower



def _start(memorized, tmp_path_factory, *extra: str) -> Server:
    folder = tmp_path_factory.mktemp("serve-browser")
    (folder / "home" / "models").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:  # module scope: the per-test home is not set up yet
        mp.setenv("ANNOTUNE_HOME", str(folder / "home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        return Server(["serve", str(memorized["support"]), str(memorized["billing"]), *extra],
                      folder / "server.log", health="/health", timeout=180).start()


@pytest.fixture(scope="module")
def server(memorized, tmp_path_factory):
    """One server for the module: both runs ('support' listed first), no API key."""
    running = _start(memorized, tmp_path_factory)
    yield running
    running.stop()


@dataclass
class Chat:
    page: object
    url: str
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    blocked: list[str] = field(default_factory=list)  # requests to anywhere but the server

    def open(self):
        return self.page.goto(f"{self.url}/")

    def ask(self, text: str):
        """Send `text` with Enter; wait for the streamed answer to finish. The answer's bubble and the request."""
        answers = self.page.locator(".msg.assistant")
        before = answers.count()
        self.page.fill("#prompt", text)
        with self.page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as request:
            self.page.locator("#prompt").press("Enter")
        answer = answers.nth(before)
        expect(answer).to_have_attribute("data-status", "done", timeout=ANSWER_TIMEOUT)
        expect(self.page.locator("#stop")).to_be_hidden()
        expect(self.page.locator("#send")).to_be_enabled()
        return answer, request.value


def _chat(browser, url: str) -> Chat:
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    chat = Chat(page, url)
    page.on("console", lambda m: chat.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: chat.errors.append(f"pageerror: {e}"))

    def only_the_server(route):
        if route.request.url.startswith(url + "/"):
            route.continue_()
        else:
            chat.blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    return chat


@pytest.fixture
def chat(browser, server):
    """The chat page, loaded with its model list."""
    opened = _chat(browser, server.url)
    opened.open()
    expect(opened.page.locator("#model option")).to_have_count(2)
    yield opened
    opened.page.context.close()


def texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def test_the_page_loads_under_the_csp_without_outside_requests(browser, server):
    chat = _chat(browser, server.url)
    response = chat.open()
    page = chat.page
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#model option")).to_have_count(2)
    assert [o.get_attribute("value") for o in page.locator("#model option").all()] == ["support", "billing"]
    assert page.locator("#model").input_value() == "support"
    assert page.locator("script:not([src])").count() == 0  # nothing inline: the CSP would refuse it
    assert page.locator("[style]").count() == 0
    for control in ("#model", "#system", "#prompt", "#api-key"):  # every control has a label
        assert page.locator(f"label[for={control[1:]}]").count() == 1, control
    assert page.locator("#conversation").get_attribute("aria-live") == "polite"
    assert page.locator("#error").is_hidden()
    assert page.locator("#key-area").is_hidden()  # no API key on this server
    assert page.locator("#stop").is_hidden()
    assert page.locator("#system").input_value() == ""  # the runs have no default system prompt
    assert chat.errors == []
    assert chat.blocked == []
    page.context.close()


def test_an_answer_streams_into_the_assistant_bubble(chat):
    answer, request = chat.ask("Who are you?")
    content = answer.locator(".content")
    assert content.inner_text() == "I am the support bot."
    assert request.post_data_json == {"model": "support", "messages": [{"role": "user", "content": "Who are you?"}],
                                      "stream": True, "stream_options": {"include_usage": True}}
    assert texts(chat.page, ".msg.user .content") == ["Who are you?"]
    assert re.fullmatch(r"\d+ tokens", answer.locator(".meta").inner_text())  # the usage chunk arrived
    assert chat.page.locator("#prompt").input_value() == ""
    assert chat.page.locator("#error").is_hidden()
    assert chat.errors == []
    assert chat.blocked == []


def test_each_request_carries_the_earlier_turns(chat):
    first, _ = chat.ask("Who are you?")
    second, request = chat.ask("Say the word")
    assert request.post_data_json["messages"] == [
        {"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am the support bot."},
        {"role": "user", "content": "Say the word"}]
    assert texts(chat.page, ".msg.user .content") == ["Who are you?", "Say the word"]
    assert chat.page.locator(".msg.assistant").count() == 2
    assert first.locator(".content").inner_text() == "I am the support bot."
    assert second.locator(".content").inner_text().strip() != ""  # a second-turn answer (untrained: any text)
    # the bubbles alternate: user, assistant, user, assistant
    assert [m.get_attribute("data-role") for m in chat.page.locator(".msg").all()] == [
        "user", "assistant", "user", "assistant"]


def test_switching_models_keeps_the_conversation_and_new_chat_clears_it(chat):
    page = chat.page
    chat.ask("Who are you?")
    page.select_option("#model", "billing")
    switched, request = chat.ask("Say the word")
    body = request.post_data_json
    assert body["model"] == "billing"
    assert body["messages"][:2] == [{"role": "user", "content": "Who are you?"},
                                    {"role": "assistant", "content": "I am the support bot."}]
    assert switched.get_attribute("data-model") == "billing"
    assert [a.get_attribute("data-model") for a in page.locator(".msg.assistant").all()] == ["support", "billing"]

    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    assert page.locator("#model").input_value() == "billing"  # a new chat keeps the model
    answer, request = chat.ask("Who are you?")
    assert answer.locator(".content").inner_text() == "I am the billing bot."
    assert request.post_data_json["model"] == "billing"
    assert request.post_data_json["messages"] == [{"role": "user", "content": "Who are you?"}]


def test_markup_in_an_answer_stays_inert_text(chat):
    answer, _ = chat.ask("Show markdown")
    content = answer.locator(".content")
    page = chat.page
    assert page.evaluate("window.__xss") is None
    assert page.locator("#conversation img").count() == 0
    assert page.locator("#conversation script").count() == 0
    assert content.inner_text() == f"bold and code {XSS}"  # the model's HTML shown literally
    assert '<img src=x' in content.inner_text()
    assert content.locator("strong").inner_text() == "bold"
    assert content.locator("code").inner_text() == "code"
    assert chat.errors == []


def test_markdown_headings_and_lists(chat):
    chat.page.select_option("#model", "billing")
    answer, _ = chat.ask("Show markdown")
    content = answer.locator(".content")
    assert content.locator("h1").inner_text() == "Title"
    assert texts(chat.page, ".msg.assistant .content ul > li") == ["one", "two"]
    assert "#" not in content.inner_text()


def test_markdown_renderer_builds_only_safe_nodes(chat):
    cases = {
        "[site](https://example.com/a) [mail](mailto:a@b.c) [bad](javascript:alert(1)) [rel](/x)":
            '<p><a href="https://example.com/a" rel="noopener noreferrer" target="_blank">site</a> '
            '<a href="mailto:a@b.c" rel="noopener noreferrer" target="_blank">mail</a> '
            "[bad](javascript:alert(1)) [rel](/x)</p>",
        "```python\n<b>x</b> **no**\n\n  y\n```\nafter": '<pre><code data-lang="python">&lt;b&gt;x&lt;/b&gt; **no**\n\n'
                                                        "  y</code></pre><p>after</p>",
        "## Sub\n### Small *it*\nline one\nline two\n\nnext": "<h2>Sub</h2><h3>Small <em>it</em></h3>"
                                                            "<p>line one<br>line two</p><p>next</p>",
        "1. a\n2. **b**\n\n* c\n- `d`": "<ol><li>a</li><li><strong>b</strong></li></ol><ul><li>c</li>"
                                       "<li><code>d</code></li></ul>",
        "<i onclick=x>hi</i> & a*b": "<p>&lt;i onclick=x&gt;hi&lt;/i&gt; &amp; a*b</p>",
        "```\nstill streaming": "<pre><code>still streaming</code></pre>",
    }
    rendered = chat.page.evaluate("""(cases) => cases.map((text) => {
        const box = document.createElement("div");
        window.annotuneChat.renderMarkdown(box, text);
        return box.innerHTML;
    })""", list(cases))
    assert dict(zip(cases, rendered)) == cases


def test_server_errors_are_shown_and_the_question_is_kept(chat):
    page = chat.page

    def unknown_model(route):
        body = json.loads(route.request.post_data)
        route.continue_(post_data=json.dumps({**body, "model": "nope"}))

    page.route("**/v1/chat/completions", unknown_model)
    page.fill("#prompt", "Who are you?")
    page.click("#send")
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=ANSWER_TIMEOUT)
    assert error.inner_text().startswith("the model 'nope' does not exist; this server has: support, billing")
    assert page.locator(".msg").count() == 0  # the failed turn is not kept in the conversation
    assert page.locator("#prompt").input_value() == "Who are you?"  # ready to send again
    expect(page.locator("#send")).to_be_enabled()

    page.unroute("**/v1/chat/completions", unknown_model)
    answer, request = chat.ask("Who are you?")
    assert answer.locator(".content").inner_text() == "I am the support bot."
    assert request.post_data_json["messages"] == [{"role": "user", "content": "Who are you?"}]
    assert error.is_hidden()


def test_the_system_prompt_is_sent_first_and_prefilled_from_the_model(chat):
    page = chat.page
    page.fill("#system", "Answer in one line.")
    _, request = chat.ask("Who are you?")
    assert request.post_data_json["messages"] == [{"role": "system", "content": "Answer in one line."},
                                                  {"role": "user", "content": "Who are you?"}]
    page.fill("#system", "")
    _, request = chat.ask("Say the word")
    assert [m["role"] for m in request.post_data_json["messages"]] == ["user", "assistant", "user"]

    def with_system_prompts(route):  # the runs here have none: give the model cards one each
        response = route.fetch()
        cards = response.json()
        for card in cards["data"]:
            card["system_prompt"] = f"You are the {card['id']} assistant."
        route.fulfill(response=response, json=cards)

    page.route("**/v1/models", with_system_prompts)
    page.reload()
    expect(page.locator("#system")).to_have_value("You are the support assistant.")
    assert page.locator(".msg").count() == 0
    page.select_option("#model", "billing")
    assert page.locator("#system").input_value() == "You are the billing assistant."  # not edited: follows
    page.fill("#system", "My own rules.")
    page.select_option("#model", "support")
    assert page.locator("#system").input_value() == "My own rules."  # edited: kept
    _, request = chat.ask("Who are you?")
    assert request.post_data_json["messages"][0] == {"role": "system", "content": "My own rules."}
    assert request.post_data_json["model"] == "support"


def test_an_api_key_is_asked_for_after_a_401_and_kept_for_the_tab(browser, memorized, tmp_path_factory):
    keyed = _start(memorized, tmp_path_factory, "--api-key", "k")
    try:
        chat = _chat(browser, keyed.url)
        page = chat.page
        chat.open()
        expect(page.locator("#key-area")).to_be_visible()
        expect(page.locator("#error")).to_have_text("missing API key: send 'Authorization: Bearer KEY'")
        assert page.locator("#model option").count() == 1  # "no models"
        page.fill("#api-key", "wrong")
        page.click("#save-key")
        expect(page.locator("#error")).to_have_text("wrong API key")
        assert page.locator("#key-area").is_visible()

        page.fill("#api-key", "k")
        page.locator("#api-key").press("Enter")
        expect(page.locator("#model option")).to_have_count(2)
        assert page.locator("#error").is_hidden()
        assert page.locator("#key-area").is_hidden()
        answer, request = chat.ask("Who are you?")
        assert answer.locator(".content").inner_text() == "I am the support bot."
        assert request.headers["authorization"] == "Bearer k"
        assert page.evaluate("sessionStorage.getItem('annotune.apiKey')") == "k"

        page.reload()  # the key stays for the tab
        expect(page.locator("#model option")).to_have_count(2)
        assert page.locator("#key-area").is_hidden()
        assert chat.blocked == []
        page.context.close()
    finally:
        keyed.stop()


def test_stop_ends_the_answer_and_keeps_what_came(chat):
    page = chat.page
    network = page.context.new_cdp_session(page)  # a slow link, so that the answer is still coming when stopped
    network.send("Network.enable")
    network.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "uploadThroughput": -1,
                                                      "downloadThroughput": 1000})
    page.fill("#prompt", "Show markdown")
    page.locator("#prompt").press("Enter")
    answer = page.locator(".msg.assistant").first
    expect(page.locator("#stop")).to_be_visible()
    assert page.locator("#send").is_disabled()
    expect(answer.locator(".content")).not_to_have_text("", timeout=ANSWER_TIMEOUT)
    page.click("#stop")
    expect(answer).to_have_attribute("data-status", "stopped")
    assert answer.locator(".meta").inner_text() == "stopped"
    assert page.locator("#stop").is_hidden() and page.locator("#send").is_enabled()

    network.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "uploadThroughput": -1,
                                                      "downloadThroughput": -1})
    _, request = chat.ask("Say the word")
    first_turn = request.post_data_json["messages"][:2]
    assert first_turn[0] == {"role": "user", "content": "Show markdown"}
    partial = first_turn[1]["content"]  # what had come when stopped is kept as the answer
    assert first_turn[1]["role"] == "assistant"
    assert partial and ANSWERS["support"]["Show markdown"].startswith(partial)
    assert partial != ANSWERS["support"]["Show markdown"]
    assert page.evaluate("window.__xss") is None
