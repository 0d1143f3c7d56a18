// segmask playground: tokens and segments, the MAS mask, MAS and causal answers side by side (streamed).
// Reads GET /playground/info, POST /playground/segments and POST /v1/chat/completions ("mask": "mas" | "causal").
// URL parameters fill the form: ?system=...&user=...&max_tokens=...&run=1 (run at once).
"use strict";

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#e15759", "#9c755f"];
const CAUSAL_GREY = "#9aa5b1", BLOCKED = "#eef1f4", MASK_PIXELS = 420;
const $ = (id) => document.getElementById(id);
let info = null;

function segmentColour(segment) {
  return segment < 0 ? CAUSAL_GREY : PALETTE[segment % PALETTE.length];
}

function tint(hex, alpha) {  // a light background from a palette colour
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

function describeServer() {
  const line = $("server");
  line.textContent = "";
  const parts = [el("span", {textContent: "model "}), el("b", {textContent: info.model})];
  if (info.base_model && info.merged_adapter) {
    parts.push(` (${info.base_model} with the MAS adapter ${info.merged_adapter} merged in)`);
  } else if (info.loaded_from !== info.model) {
    parts.push(` (loaded from ${info.loaded_from})`);
  }
  parts.push(" · LoRA adapter on top ", el("b", {textContent: info.adapter || "none"}));
  parts.push(" · server prefill ", el("b", {textContent: info.mask === "mas" ? "MAS" : "causal"}));
  if (!info.masks.includes("mas")) {
    parts.push(" · ", el("span", {className: "warn",
      textContent: "only causal prefill is available: this server runs with --causal"}));
  }
  line.append(...parts);
  $("max-tokens").max = info.limits.max_tokens;
  for (const card of document.querySelectorAll(".answer")) {
    card.querySelector(".meta").textContent = `${info.model} · "mask": "${card.dataset.mask}"`;
  }
  if (!info.masks.includes("mas")) unavailable($("answer-mas"));
}

function unavailable(card) {
  card.dataset.state = "unavailable";
  card.querySelector(".text").textContent = "Not available: this server was started with --causal and prefills " +
    "every request causally (a model trained causally answers badly under MAS). Run `segmask serve` without " +
    "--causal, with the MAS-ready default model or a MAS-trained adapter, to compare both.";
  card.querySelector(".status").textContent = "";
}

function messages() {
  const system = $("system").value, user = $("user").value;
  return system.trim() ? [{role: "system", content: system}, {role: "user", content: user}]
                       : [{role: "user", content: user}];
}

function roleNames(spans, msgs) {  // segment -> what it holds, for the legend
  const segments = spans.filter((s) => s.segment >= 0).map((s) => s.segment);
  const roles = msgs.map((m) => `${m.role} message`);
  if (segments.length > roles.length) roles.unshift("added by the chat template");
  return new Map(segments.map((s, i) => [s, roles[i] || "segment"]));
}

function showToken(text) {  // visible whitespace
  const out = [];
  for (const part of text.split(/( +|\n|\t)/)) {
    if (!part) continue;
    if (part === "\n") out.push(el("span", {className: "ws", textContent: "↵"}));
    else if (part === "\t") out.push(el("span", {className: "ws", textContent: "→"}));
    else if (/^ +$/.test(part)) out.push(el("span", {className: "ws", textContent: "·".repeat(part.length)}));
    else out.push(part);
  }
  return out;
}

function renderTokens(seg, msgs) {
  const names = roleNames(seg.spans, msgs);
  $("token-count").textContent = `${seg.tokens.length} tokens, ${names.size} segments`;
  const legend = $("spans");
  legend.textContent = "";
  for (const span of seg.spans) {
    const n = span.end - span.start;
    const label = span.segment >= 0 ? `segment ${span.segment}: ${names.get(span.segment)}` : "causal";
    legend.append(el("span", {className: "span-label"}, [
      el("span", {className: "swatch", style: `background:${segmentColour(span.segment)};margin-left:0`}),
      `${label} (${n} token${n === 1 ? "" : "s"})`]));
  }
  const box = $("tokens");
  box.textContent = "";
  seg.tokens.forEach((text, i) => {
    const s = seg.segment_ids[i];
    const chip = el("span", {className: s < 0 ? "tok causal" : "tok",
      title: `#${i} id ${seg.token_ids[i]} · ${s < 0 ? "causal" : "segment " + s}`}, showToken(text));
    chip.dataset.segment = s;
    if (s >= 0) chip.style.cssText = `background:${tint(segmentColour(s), 0.18)};border-color:${segmentColour(s)}`;
    box.append(chip);
  });
}

function drawMask(seg) {
  const n = seg.tokens.length, canvas = $("mask");
  const cell = Math.max(1, Math.min(14, Math.floor(MASK_PIXELS / n)));
  const strip = Math.max(4, cell), size = strip + 2 + n * cell;
  canvas.width = canvas.height = size;
  canvas.style.width = canvas.style.height = `${Math.min(size, MASK_PIXELS + 40)}px`;
  const ctx = canvas.getContext("2d"), origin = strip + 2;
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = BLOCKED;
  ctx.fillRect(origin, origin, n * cell, n * cell);
  for (let q = 0; q < n; q++) {
    const s = seg.segment_ids[q];
    ctx.fillStyle = segmentColour(s);  // segment strips along the top (keys) and left (queries)
    ctx.fillRect(origin + q * cell, 0, cell, strip);
    ctx.fillRect(0, origin + q * cell, strip, cell);
    ctx.fillStyle = CAUSAL_GREY;
    ctx.fillRect(origin, origin + q * cell, (q + 1) * cell, cell);
    if (seg.visible[q] > q + 1) {
      ctx.fillStyle = segmentColour(s);
      ctx.fillRect(origin + (q + 1) * cell, origin + q * cell, (seg.visible[q] - q - 1) * cell, cell);
    }
  }
  if (cell >= 3) {  // segment boundaries
    ctx.strokeStyle = "rgba(255,255,255,0.9)";
    ctx.lineWidth = 1;
    for (const span of seg.spans.slice(1)) {
      const at = origin + span.start * cell + 0.5;
      ctx.beginPath(); ctx.moveTo(at, origin); ctx.lineTo(at, size); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(origin, at); ctx.lineTo(size, at); ctx.stroke();
    }
  }
  $("mask-size").textContent = `${n} × ${n}`;
  const note = $("mask-note");
  if (info && !info.masks.includes("mas")) {
    note.className = "note warn";
    note.textContent = "This server prefills causally: the coloured cells are what MAS would add.";
  } else {
    note.className = "note";
    note.textContent = "Rows are queries, columns keys; causal prefill keeps only the grey triangle.";
  }
}

async function apiError(resp) {
  try {
    const body = await resp.json();
    return body.error ? body.error.message : JSON.stringify(body);
  } catch (e) {
    return `HTTP ${resp.status}`;
  }
}

async function showSegments(msgs) {
  const resp = await fetch("/playground/segments", {method: "POST", headers: {"Content-Type": "application/json"},
                                                     body: JSON.stringify({messages: msgs})});
  if (!resp.ok) {
    $("tokens").textContent = "";
    $("spans").textContent = "";
    $("tokens").append(el("p", {className: "error", textContent: await apiError(resp)}));
    return;
  }
  const seg = await resp.json();
  renderTokens(seg, msgs);
  drawMask(seg);
}

async function streamAnswer(card, msgs, maxTokens) {
  if (!info.masks.includes(card.dataset.mask)) return unavailable(card);
  const text = card.querySelector(".text"), status = card.querySelector(".status");
  text.textContent = "";
  card.dataset.state = "waiting";
  status.textContent = "waiting for the server…";
  const body = {model: info.model, messages: msgs, max_tokens: maxTokens, temperature: 0, stream: true,
                stream_options: {include_usage: true}, mask: card.dataset.mask};
  const resp = await fetch("/v1/chat/completions", {method: "POST", headers: {"Content-Type": "application/json"},
                                                    body: JSON.stringify(body)});
  if (!resp.ok) {
    card.dataset.state = "error";
    text.textContent = await apiError(resp);
    status.textContent = "";
    return;
  }
  const reader = resp.body.getReader(), decoder = new TextDecoder();
  let buffer = "", finish = null, tokens = null;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const chunk = JSON.parse(event.slice(6));
      if (chunk.error) {
        card.dataset.state = "error";
        text.textContent += `\n[${chunk.error.message}]`;
        continue;
      }
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) {
        card.dataset.state = "streaming";
        text.textContent += choice.delta.content;
        status.textContent = "streaming…";
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  if (card.dataset.state === "error") return;
  // No timings: the server batches statically, so one answer may wait for the other's batch to end.
  status.textContent = `${tokens === null ? "?" : tokens} tokens · finish: ${finish}`;
  card.dataset.state = "done";
}

async function run(event) {
  if (event) event.preventDefault();
  const button = $("run"), msgs = messages();
  const maxTokens = parseInt($("max-tokens").value, 10) || info.limits.default_max_tokens;
  button.disabled = true;
  document.body.dataset.state = "running";
  try {
    await Promise.all([showSegments(msgs), ...[...document.querySelectorAll(".answer")].map(
      (card) => streamAnswer(card, msgs, maxTokens).catch((err) => {
        card.dataset.state = "error";
        card.querySelector(".text").textContent = String(err);
      }))]);
  } finally {
    button.disabled = false;
    document.body.dataset.state = "done";
  }
}

async function init() {
  const params = new URLSearchParams(location.search);
  for (const [key, id] of [["system", "system"], ["user", "user"], ["max_tokens", "max-tokens"]]) {
    if (params.has(key)) $(id).value = params.get(key);
  }
  const resp = await fetch("/playground/info");
  info = await resp.json();
  describeServer();
  $("prompt").addEventListener("submit", run);
  document.body.dataset.state = "ready";
  if (params.get("run") === "1") run();
}

init().catch((err) => {
  $("server").textContent = `cannot reach the server: ${err}`;
  document.body.dataset.state = "error";
});
