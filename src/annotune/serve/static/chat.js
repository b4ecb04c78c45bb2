// The chat page of `annotune serve`: pick a model, talk to it through the server's own OpenAI-compatible API.
// Model output is rendered as a small, safe Markdown subset built only from DOM and text nodes: nothing a
// model writes is ever parsed as HTML.
"use strict";

(function () {
  const KEY_STORAGE = "annotune.apiKey";

  const $ = (id) => document.getElementById(id);
  const ui = {
    model: $("model"), modelInfo: $("model-info"), newChat: $("new-chat"), system: $("system"),
    keyArea: $("key-area"), keyForm: $("key-form"), key: $("api-key"),
    error: $("error"), conversation: $("conversation"), empty: $("empty"),
    composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
  };

  const state = {
    models: new Map(),      // id -> model card
    history: [],            // finished turns: {role: "user"|"assistant", content}
    systemEdited: false,    // the user typed in the system prompt: keep it across model switches
    controller: null,       // AbortController of the answer being streamed
  };

  // ---- API key and requests ------------------------------------------------------------------------------------

  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) { /* storage disabled: the key lives until the page is left */ }
    memoryKey = key;
  }

  let memoryKey = storedKey();

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (memoryKey) h["Authorization"] = "Bearer " + memoryKey;
    return h;
  }

  // The server's {"error": {"message", ...}} as text, or a description of what came back instead.
  async function errorMessage(response) {
    let text = "";
    try { text = await response.text(); } catch (e) { /* body unreadable */ }
    try {
      const body = JSON.parse(text);
      if (body && body.error && typeof body.error.message === "string") return body.error.message;
    } catch (e) { /* not JSON */ }
    return "the server answered " + response.status + (response.statusText ? " " + response.statusText : "");
  }

  async function failed(response) {
    const message = await errorMessage(response);
    if (response.status === 401) showKeyArea();
    return message;
  }

  // ---- errors ---------------------------------------------------------------------------------------------------

  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  function showKeyArea() {
    ui.keyArea.hidden = false;
    ui.key.value = memoryKey;
    ui.key.focus();
    ui.key.select();
  }

  // ---- models ---------------------------------------------------------------------------------------------------

  async function loadModels() {
    let response;
    try {
      response = await fetch("/v1/models", { headers: headers(), cache: "no-store" });
    } catch (e) {
      showError("could not reach the server: " + e.message);
      return false;
    }
    if (!response.ok) {
      showError(await failed(response));
      setModels([]);
      return false;
    }
    const body = await response.json();
    setModels(Array.isArray(body.data) ? body.data : []);
    clearError();
    return true;
  }

  function setModels(cards) {
    const previous = ui.model.value;
    state.models = new Map(cards.map((card) => [String(card.id), card]));
    ui.model.replaceChildren();
    if (!cards.length) {
      const none = document.createElement("option");
      none.value = "";
      none.textContent = "no models";
      ui.model.append(none);
      ui.model.disabled = true;
      ui.modelInfo.textContent = "";
      return;
    }
    for (const card of cards) {
      const option = document.createElement("option");
      option.value = String(card.id);
      option.textContent = String(card.id);
      ui.model.append(option);
    }
    ui.model.disabled = false;
    if (state.models.has(previous)) ui.model.value = previous;
    modelChanged();
  }

  function modelChanged() {
    const card = state.models.get(ui.model.value);
    if (!card) return;
    const info = [];
    if (card.parent) info.push("on " + baseName(String(card.parent)));
    if (card.max_model_len) info.push(card.max_model_len + " tokens context");
    ui.modelInfo.textContent = info.join(" · ");
    ui.modelInfo.title = card.parent ? "base model: " + card.parent : "";
    if (!state.systemEdited) ui.system.value = typeof card.system_prompt === "string" ? card.system_prompt : "";
  }

  function baseName(path) {
    const parts = path.split(/[\\/]/).filter(Boolean);
    return parts.length ? parts[parts.length - 1] : path;
  }

  // ---- conversation ---------------------------------------------------------------------------------------------

  function bubble(role) {
    ui.empty.hidden = true;
    const msg = document.createElement("article");
    msg.className = "msg " + role;
    msg.dataset.role = role;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    const content = document.createElement("div");
    content.className = "content";
    msg.append(who, content);
    ui.conversation.append(msg);
    return msg;
  }

  function addMeta(msg, text) {
    let meta = msg.querySelector(".meta");
    if (!meta) {
      meta = document.createElement("div");
      meta.className = "meta";
      msg.append(meta);
    }
    meta.textContent = text;
    return meta;
  }

  function scrollToEnd() {
    window.scrollTo(0, document.body.scrollHeight);
  }

  function setBusy(busy) {
    ui.send.disabled = busy;
    ui.stop.hidden = !busy;
    ui.model.disabled = busy || state.models.size === 0;
    ui.newChat.disabled = busy;
    document.body.dataset.busy = busy ? "true" : "false";
  }

  function newChat() {
    if (state.controller) return;
    state.history = [];
    for (const msg of ui.conversation.querySelectorAll(".msg")) msg.remove();
    ui.empty.hidden = false;
    clearError();
    ui.prompt.value = "";
    ui.prompt.focus();
  }

  function requestMessages() {
    const messages = [];
    const system = ui.system.value;
    if (system.trim()) messages.push({ role: "system", content: system });
    for (const turn of state.history) messages.push({ role: turn.role, content: turn.content });
    return messages;
  }

  async function send() {
    if (state.controller) return;
    const text = ui.prompt.value;
    if (!text.trim()) {
      ui.prompt.focus();
      return;
    }
    const model = ui.model.value;
    if (!model) {
      showError("no model to answer: the model list did not load" + (ui.keyArea.hidden ? "" : " (enter the API key)"));
      return;
    }
    clearError();
    ui.prompt.value = "";
    state.history.push({ role: "user", content: text });
    const userMsg = bubble("user");
    userMsg.querySelector(".content").textContent = text;
    const answer = bubble("assistant");
    answer.dataset.model = model;
    answer.dataset.status = "streaming";
    answer.setAttribute("aria-busy", "true");
    answer.querySelector(".who").textContent = model;
    const content = answer.querySelector(".content");
    content.classList.add("pending");
    scrollToEnd();

    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    const result = { text: "", usage: null, finish: null, error: null };
    let status = "done";
    try {
      await stream(model, requestMessages(), controller.signal, result, () => {
        content.classList.remove("pending");
        renderMarkdown(content, result.text);
        scrollToEnd();
      });
      if (result.error) status = "error";
    } catch (e) {
      if (e && e.name === "AbortError") {
        status = "stopped";
      } else {
        status = "error";
        result.error = result.error || (e && e.message) || String(e);
      }
    } finally {
      state.controller = null;
      setBusy(false);
    }

    content.classList.remove("pending");
    renderMarkdown(content, result.text);
    if (result.error) showError(result.error);
    if (!result.text) {
      // Nothing came back: take the question back into the input, so that it can be sent again.
      state.history.pop();
      userMsg.remove();
      answer.remove();
      if (!ui.conversation.querySelector(".msg")) ui.empty.hidden = false;
      if (!ui.prompt.value) ui.prompt.value = text;
    } else {
      state.history.push({ role: "assistant", content: result.text });
      answer.dataset.status = status;
      answer.removeAttribute("aria-busy");
      const meta = [];
      if (result.usage && typeof result.usage.completion_tokens === "number") {
        meta.push(result.usage.completion_tokens + " tokens");
      }
      if (result.finish === "length") meta.push("cut off at the token limit");
      if (status === "stopped") meta.push("stopped");
      if (status === "error") meta.push("failed");
      const metaNode = addMeta(answer, meta.join(" · "));
      if (result.usage) {
        metaNode.title = "prompt " + result.usage.prompt_tokens + " + answer " + result.usage.completion_tokens +
          " = " + result.usage.total_tokens + " tokens";
      }
    }
    ui.prompt.focus();
    scrollToEnd();
  }

  // POST the conversation and read the server-sent events into `result`; `update` runs whenever text arrived.
  async function stream(model, messages, signal, result, update) {
    let response;
    try {
      response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", "Accept": "text/event-stream" }),
        body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true } }),
        signal,
      });
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new Error("could not reach the server: " + (e && e.message ? e.message : e));
    }
    if (!response.ok) {
      result.error = await failed(response);
      return;
    }
    if (!response.body) throw new Error("the browser cannot read a streamed answer");
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    let buffer = "";
    let finished = false;

    const handle = (line) => {
      if (!line.startsWith("data:")) return false;  // comments, event names, ids: not used by this server
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        finished = true;
        return false;
      }
      let chunk;
      try { chunk = JSON.parse(data); } catch (e) { return false; }
      if (chunk.error) {
        result.error = typeof chunk.error.message === "string" ? chunk.error.message : "the answer failed";
        return false;
      }
      if (chunk.usage) result.usage = chunk.usage;
      const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
      if (!choice) return false;
      if (choice.finish_reason) result.finish = choice.finish_reason;
      const piece = choice.delta && choice.delta.content;
      if (typeof piece === "string" && piece) {
        result.text += piece;
        return true;
      }
      return false;
    };

    try {
      while (!finished) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let changed = false;
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          if (handle(line)) changed = true;
        }
        if (changed) update();
      }
      buffer += decoder.decode();
      if (buffer && handle(buffer.replace(/\r$/, ""))) update();
    } finally {
      if (finished) reader.cancel().catch(() => {});
    }
  }

  function stop() {
    if (state.controller) state.controller.abort();
  }

  // ---- safe Markdown: DOM nodes only ----------------------------------------------------------------------------

  const SAFE_URL = /^(https?:\/\/|mailto:)/i;

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  // Fenced code, headings (#, ##, ###), lists (-, *, 1.), paragraphs with line breaks.
  function renderMarkdown(container, text) {
    const out = document.createDocumentFragment();
    const lines = text.replace(/\r\n?/g, "\n").split("\n");
    let paragraph = null;
    let list = null;
    let i = 0;
    const endBlocks = () => { paragraph = null; list = null; };

    while (i < lines.length) {
      const line = lines[i];
      const fence = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/.exec(line);
      if (fence) {
        endBlocks();
        const marker = fence[1];
        const body = [];
        i += 1;
        while (i < lines.length && !(lines[i].trim().startsWith(marker) && lines[i].trim().replace(/[`~]/g, "") === "")) {
          body.push(lines[i]);
          i += 1;
        }
        i += 1;  // the closing fence (or past the end while the answer is still streaming)
        const pre = el("pre");
        const code = el("code");
        if (fence[2]) code.dataset.lang = fence[2];
        code.textContent = body.join("\n");
        pre.append(code);
        out.append(pre);
        continue;
      }
      const heading = /^\s{0,3}(#{1,3})\s+(.*?)\s*#*\s*$/.exec(line);
      if (heading) {
        endBlocks();
        const h = el("h" + heading[1].length);
        renderInline(h, heading[2]);
        out.append(h);
        i += 1;
        continue;
      }
      const bullet = /^\s{0,3}([-*+])\s+(.*)$/.exec(line);
      const numbered = bullet ? null : /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        const tag = bullet ? "ul" : "ol";
        paragraph = null;
        if (!list || list.tagName.toLowerCase() !== tag) {
          list = el(tag);
          if (numbered && numbered[1] !== "1") list.start = parseInt(numbered[1], 10);
          out.append(list);
        }
        const item = el("li");
        renderInline(item, (bullet || numbered)[2]);
        list.append(item);
        i += 1;
        continue;
      }
      if (!line.trim()) {
        endBlocks();
        i += 1;
        continue;
      }
      if (list && /^\s{2,}\S/.test(line)) {  // an indented line continues the list item
        const item = list.lastElementChild;
        item.append(el("br"));
        renderInline(item, line.trim());
        i += 1;
        continue;
      }
      list = null;
      if (paragraph) {
        paragraph.append(el("br"));
      } else {
        paragraph = el("p");
        out.append(paragraph);
      }
      renderInline(paragraph, line);
      i += 1;
    }
    container.replaceChildren(out);
  }

  // `code`, **bold**, *italic*, [text](http…|mailto:…); everything else is text.
  function renderInline(parent, text) {
    let plain = "";
    const flush = () => {
      if (plain) parent.append(document.createTextNode(plain));
      plain = "";
    };
    let i = 0;
    while (i < text.length) {
      const rest = text.slice(i);
      let m;
      if (rest[0] === "`" && (m = /^(`+)([\s\S]*?[^`])\1(?!`)/.exec(rest))) {
        flush();
        const code = el("code");
        code.textContent = m[2].trim() ? m[2].replace(/^ ([\s\S]*) $/, "$1") : m[2];
        parent.append(code);
        i += m[0].length;
        continue;
      }
      if (rest.startsWith("**") && (m = /^\*\*(?=\S)([\s\S]*?\S)\*\*/.exec(rest))) {
        flush();
        const strong = el("strong");
        renderInline(strong, m[1]);
        parent.append(strong);
        i += m[0].length;
        continue;
      }
      if (rest[0] === "*" && (m = /^\*(?=[^\s*])([^*]*?[^\s*])?\*(?!\*)/.exec(rest)) ) {
        flush();
        const em = el("em");
        renderInline(em, m[0].slice(1, -1));
        parent.append(em);
        i += m[0].length;
        continue;
      }
      if (rest[0] === "[" && (m = /^\[([^\]\n]+)\]\(\s*([^\s)]+)\s*\)/.exec(rest))) {
        flush();
        if (SAFE_URL.test(m[2])) {
          const a = el("a");
          a.href = m[2];
          a.rel = "noopener noreferrer";
          a.target = "_blank";
          renderInline(a, m[1]);
          parent.append(a);
        } else {
          parent.append(document.createTextNode(m[0]));  // not a link we follow: shown as written
        }
        i += m[0].length;
        continue;
      }
      plain += rest[0];
      i += 1;
    }
    flush();
  }

  // ---- wiring ---------------------------------------------------------------------------------------------------

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.stop.addEventListener("click", stop);
  ui.newChat.addEventListener("click", newChat);
  ui.model.addEventListener("change", modelChanged);
  ui.system.addEventListener("input", () => { state.systemEdited = true; });
  ui.keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    storeKey(ui.key.value.trim());
    if (await loadModels()) {
      ui.keyArea.hidden = true;
      ui.prompt.focus();
    }
  });

  window.annotuneChat = { renderMarkdown };  // for tests and the curious; renders into a given element
  setBusy(false);
  loadModels().then((ok) => { if (ok) ui.prompt.focus(); });
})();
