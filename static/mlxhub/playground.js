// The playground: chat with a profile through /v1/chat/completions (streamed server-sent events), compare two
// texts through /v1/embeddings. Requests carry the session cookie and the CSRF token, not an API key, and go
// through the same admission, limits, audit and engine as any client's. Stop aborts the fetch: the server
// cancels the generation when its client goes away.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("playground-config").textContent);
  const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
  const csrfToken = headers["X-CSRFToken"] || "";
  const $ = (id) => document.getElementById(id);

  const log = $("chat-log");
  const prompt = $("prompt");
  const send = $("send");
  const stop = $("stop");
  const profileSelect = $("profile");
  const system = $("system");
  const temperature = $("temperature");
  const maxTokens = $("max-tokens");
  const imageInput = $("image");
  const history = [];  // the conversation so far, as OpenAI messages
  let controller = null;

  function profile() {
    return config.profiles.find((item) => item.name === (profileSelect && profileSelect.value)) || null;
  }

  function applyProfile() {
    const chosen = profile();
    if (!chosen) return;
    system.placeholder = chosen.system_prompt ? `The profile's: ${chosen.system_prompt}` : "Empty: none";
    if (chosen.temperature !== null) temperature.value = chosen.temperature;
    if (chosen.max_tokens !== null) maxTokens.value = chosen.max_tokens;
    $("temperature-value").textContent = Number(temperature.value).toFixed(2);
    $("image-row").hidden = chosen.kind !== "vision";
    if (chosen.kind !== "vision") imageInput.value = "";
    showCode(buildBody("Hello"));
  }

  function bubble(role, text) {
    const empty = $("chat-empty");
    if (empty) empty.remove();
    const item = document.createElement("div");
    item.className = `msg ${role}`;
    item.textContent = text;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function meta(text) {
    const item = document.createElement("div");
    item.className = "msg-meta";
    item.textContent = text;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function readImage() {
    const file = imageInput && imageInput.files && imageInput.files[0];
    if (!file) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error("The image could not be read."));
      reader.readAsDataURL(file);
    });
  }

  function buildBody(text, image) {
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value.trim() });
    messages.push(...history);
    const content = image ? [{ type: "text", text }, { type: "image_url", image_url: { url: image } }] : text;
    messages.push({ role: "user", content });
    return {
      model: profileSelect ? profileSelect.value : "",
      messages,
      stream: true,
      stream_options: { include_usage: true },
      temperature: Number(temperature.value),
      max_tokens: Number(maxTokens.value),
    };
  }

  // "Show code": the exact request, with long data URLs shortened for reading.
  function showCode(body) {
    if (!body) return;
    const shown = JSON.parse(JSON.stringify(body, (key, value) =>
      typeof value === "string" && value.startsWith("data:") && value.length > 80 ? `${value.slice(0, 40)}…` : value));
    const json = JSON.stringify(shown, null, 2);
    const python = (value) => JSON.stringify(value, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
    $("snippet-curl").textContent =
      `curl ${config.base_url}/chat/completions \\\n  -H "Authorization: Bearer $MLXHUB_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${json.replace(/'/g, "'\\''")}'`;
    const { model, messages, temperature: temp, max_tokens: limit } = shown;
    $("snippet-openai").textContent =
      `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${config.base_url}", api_key=os.environ["MLXHUB_API_KEY"])\n` +
      `stream = client.chat.completions.create(\n    model=${JSON.stringify(model)},\n    messages=${python(messages).replace(/\n/g, "\n    ")},\n` +
      `    temperature=${temp},\n    max_tokens=${limit},\n    stream=True,\n    stream_options={"include_usage": True},\n)\n` +
      `for chunk in stream:\n    if chunk.choices:\n        print(chunk.choices[0].delta.content or "", end="", flush=True)`;
    const systemText = messages.filter((item) => item.role === "system").map((item) => item.content).join("\n");
    const turns = messages.filter((item) => item.role !== "system").map((item) => ({
      role: item.role,
      content: Array.isArray(item.content)
        ? item.content.map((part) => part.type === "text" ? part : { type: "image", source: { type: "base64", media_type: part.image_url.url.slice(5, part.image_url.url.indexOf(";")), data: "…" } })
        : item.content,
    }));
    $("snippet-anthropic").textContent =
      `import os\nimport anthropic\n\nclient = anthropic.Anthropic(base_url="${config.anthropic_base_url}", api_key=os.environ["MLXHUB_API_KEY"])\n` +
      `with client.messages.stream(\n    model=${JSON.stringify(model)},\n    max_tokens=${limit},\n` +
      (systemText ? `    system=${JSON.stringify(systemText)},\n` : "") +
      `    messages=${python(turns).replace(/\n/g, "\n    ")},\n    extra_body={"temperature": ${temp}},\n) as stream:\n` +
      `    for text in stream.text_stream:\n        print(text, end="", flush=True)`;
  }

  function errorWords(status, payload) {
    const message = payload && payload.error && (payload.error.message || payload.error) || "";
    if (status === 401 || status === 403) return `Not allowed (${status}): ${message || "sign in again."}`;
    if (status === 429) return `Over a limit: ${message || "wait a moment and try again."}`;
    if (status === 503) return `The model is not available right now: ${message}`;
    return message ? `Error ${status}: ${message}` : `The server answered ${status}.`;
  }

  function setGenerating(on) {
    log.dataset.generating = String(on);
    send.hidden = on;
    stop.hidden = !on;
    prompt.disabled = on;
    if (!on) prompt.focus();
  }

  async function chat(text) {
    let image = null;
    try {
      image = await readImage();
    } catch (error) {
      window.mlxhubToast(error.message);
      return;
    }
    const body = buildBody(text, image);
    showCode(body);
    const userBubble = bubble("user", text);
    if (image) {
      const picture = document.createElement("img");
      picture.src = image;
      picture.alt = "the attached image";
      userBubble.prepend(picture);
    }
    const reply = bubble("assistant", "");
    reply.dataset.state = "waiting";
    reply.id = `reply-${log.querySelectorAll(".msg.assistant").length}`;
    setGenerating(true);
    controller = new AbortController();
    const started = performance.now();
    let firstToken = null;
    let chunks = 0;
    let usage = null;
    let finish = "";
    let text_out = "";
    try {
      const response = await fetch(config.chat_url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken, Accept: "text/event-stream" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) {
        let payload = null;
        try { payload = await response.json(); } catch (error) { payload = null; }
        throw Object.assign(new Error(errorWords(response.status, payload)), { shown: true });
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      reply.dataset.state = "streaming";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;  // ": keepalive" comments and blank lines
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.error) throw Object.assign(new Error(errorWords(chunk.error.code || 500, chunk)), { shown: true });
            if (chunk.usage) usage = chunk.usage;
            const choice = chunk.choices && chunk.choices[0];
            if (!choice) continue;
            if (choice.finish_reason) finish = choice.finish_reason;
            const delta = choice.delta && choice.delta.content;
            if (delta) {
              if (firstToken === null) firstToken = performance.now();
              chunks += 1;
              text_out += delta;
              reply.textContent = text_out;
              log.scrollTop = log.scrollHeight;
            }
          }
        }
      }
      reply.dataset.state = "done";
      history.push(body.messages[body.messages.length - 1], { role: "assistant", content: text_out });
    } catch (error) {
      if (error.name === "AbortError") {
        reply.dataset.state = "stopped";
        finish = "stopped";
        if (!text_out) reply.textContent = "(stopped before the first token)";
      } else {
        reply.dataset.state = "error";
        reply.classList.add("error");
        reply.textContent = error.shown ? error.message : `The request failed: ${error.message}`;
      }
    } finally {
      controller = null;
      setGenerating(false);
    }
    const ended = performance.now();
    const parts = [];
    if (firstToken !== null) parts.push(`TTFT ${Math.round(firstToken - started)} ms`);
    const completion = usage ? usage.completion_tokens : chunks;
    if (firstToken !== null && ended > firstToken && completion > 1) {
      parts.push(`${((completion - 1) / ((ended - firstToken) / 1000)).toFixed(1)} tokens/s`);
    }
    if (usage) parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    else if (chunks) parts.push(`≈${chunks} tokens`);
    if (finish) parts.push(finish === "length" ? "stopped at max tokens" : finish);
    if (parts.length) meta(parts.join(" · ")).dataset.for = reply.id;
  }

  if (profileSelect) {
    profileSelect.addEventListener("change", applyProfile);
    temperature.addEventListener("input", () => { $("temperature-value").textContent = Number(temperature.value).toFixed(2); });
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = prompt.value.trim();
      if (!text || controller) return;
      prompt.value = "";
      chat(text);
    });
    prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    stop.addEventListener("click", () => { if (controller) controller.abort(); });
    $("clear").addEventListener("click", () => {
      if (controller) controller.abort();
      history.length = 0;
      log.replaceChildren();
    });
    imageInput.addEventListener("change", () => { $("image-name").textContent = imageInput.files[0] ? imageInput.files[0].name : ""; });
    applyProfile();
  }

  // Embeddings: cosine similarity of two texts.
  const embeddingsForm = $("embeddings-form");
  if (embeddingsForm) {
    embeddingsForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = $("similarity-result");
      const body = { model: $("embedding-profile").value, input: [$("text-a").value, $("text-b").value] };
      result.textContent = "Embedding…";
      const started = performance.now();
      try {
        const response = await fetch(config.embeddings_url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
          body: JSON.stringify(body),
        });
        const payload = await response.json();
        if (!response.ok) throw new Error(errorWords(response.status, payload));
        const [a, b] = payload.data.map((item) => item.embedding);
        let dot = 0, normA = 0, normB = 0;
        for (let index = 0; index < a.length; index += 1) {
          dot += a[index] * b[index];
          normA += a[index] * a[index];
          normB += b[index] * b[index];
        }
        const similarity = dot / (Math.sqrt(normA) * Math.sqrt(normB));
        result.innerHTML = "";
        const figure = document.createElement("div");
        figure.className = "similarity";
        figure.id = "similarity-value";
        figure.textContent = similarity.toFixed(3);
        const note = document.createElement("small");
        note.className = "muted";
        note.textContent = `cosine similarity · ${a.length} dimensions · ${payload.usage.prompt_tokens} tokens · ${Math.round(performance.now() - started)} ms`;
        result.append(figure, note);
      } catch (error) {
        result.innerHTML = "";
        const message = document.createElement("p");
        message.className = "error-text";
        message.textContent = error.message;
        result.append(message);
      }
    });
  }
})();
