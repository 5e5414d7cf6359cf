// The Web Worker that runs tinypoet: it loads the wasm module and the model blob from the same
// origin, then writes poems one character at a time and posts each character to the page, so the
// page never blocks. The module's ABI is documented in web/src/lib.rs (`tp_*` functions).
//
// Messages in:  {type: "write", title, asTitle, seed, temperature, maxLen, stopAtBlankLine}   {type: "stop"}
// Messages out: {type: "ready", info, takesTitles, wasmBytes, blobBytes}
//               {type: "start", prompt, converted}      the prompt used; converted: ["静→靜", …]
//               {type: "char", c, chars, ms}            one character; chars/ms so far
//               {type: "done", reason, chars, ms}       {type: "error", message}
"use strict";

const WASM_URL = "tinypoet.wasm";
const BLOB_URL = "model.tpb";

let ex = null; // the module's exports
let running = 0; // id of the poem being written; a new "write" or a "stop" changes it
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function message() {
  const bytes = new Uint8Array(ex.memory.buffer, ex.tp_message_ptr(), ex.tp_message_len());
  return fromUtf8.decode(bytes);
}

// Copy bytes into the module's inbox (a view is made after tp_buffer: it may grow the memory).
function put(bytes) {
  const ptr = ex.tp_buffer(bytes.length);
  new Uint8Array(ex.memory.buffer, ptr, bytes.length).set(bytes);
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

// Yield to the worker's event loop (so a "stop" message is seen) without setTimeout's 4 ms clamp.
const channel = new MessageChannel();
const wakers = [];
channel.port1.onmessage = () => wakers.shift()();
function yieldNow() {
  return new Promise((resolve) => {
    wakers.push(resolve);
    channel.port2.postMessage(0);
  });
}

async function init() {
  const [wasm, blob] = await Promise.all([fetchBytes(WASM_URL), fetchBytes(BLOB_URL)]);
  const { instance } = await WebAssembly.instantiate(wasm, {});
  ex = instance.exports;
  put(blob);
  if (ex.tp_load() !== 0) throw new Error(`${BLOB_URL}: ${message()}`);
  const info = message();
  postMessage({
    type: "ready", info, takesTitles: ex.tp_takes_titles() === 1, wasmBytes: wasm.length, blobBytes: blob.length,
  });
}

async function write({ title, asTitle, seed, temperature, maxLen, stopAtBlankLine }) {
  const id = ++running;
  // Simplified characters become traditional ones (the corpus is traditional Chinese).
  put(utf8.encode(title));
  const nConverted = ex.tp_to_traditional();
  const prompt = nConverted > 0 ? message() : title;
  const converted = [];
  if (nConverted > 0) {
    const a = [...title], b = [...prompt];
    for (let i = 0; i < a.length; i++) {
      const pair = `${a[i]}→${b[i]}`;
      if (a[i] !== b[i] && !converted.includes(pair)) converted.push(pair);
    }
  }
  put(utf8.encode(prompt));
  const t0 = performance.now();
  if (ex.tp_start(BigInt(seed), temperature, 0, 1, 1, maxLen, stopAtBlankLine ? 1 : 0, asTitle ? 1 : 0) !== 0) {
    postMessage({ type: "error", message: message() });
    return;
  }
  postMessage({ type: "start", prompt, asTitle, converted });
  let chars = 0;
  let lastYield = t0;
  for (;;) {
    const c = ex.tp_next();
    if (c < 0) {
      postMessage({ type: "error", message: message() });
      return;
    }
    const ms = performance.now() - t0;
    if (c === 0) {
      postMessage({ type: "done", reason: message(), chars, ms });
      return;
    }
    chars += 1;
    postMessage({ type: "char", c: String.fromCodePoint(c), chars, ms });
    if (performance.now() - lastYield > 25) {
      await yieldNow();
      lastYield = performance.now();
      if (id !== running) return; // stopped, or a new poem was asked for
    }
  }
}

const ready = init().catch((e) => postMessage({ type: "error", message: String(e.message || e) }));

onmessage = async (e) => {
  await ready;
  if (!ex) return;
  if (e.data.type === "write") {
    write(e.data);
  } else if (e.data.type === "stop") {
    running += 1;
    postMessage({ type: "done", reason: "stopped", chars: null, ms: null });
  }
};
