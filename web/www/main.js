// The page: a form, and a poem that grows as the worker (worker.js) posts its characters.
// All the work happens in the worker; this file only moves messages and text around.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("form");
const poem = $("poem");
const note = $("note");
const stats = $("stats");
const writeButton = $("write");
const stopButton = $("stop");

const worker = new Worker("worker.js");
let text = null; // the text node the characters are appended to
let convertedNote = ""; // what the worker converted, shown until the next poem

function setNote(s, isError = false) {
  note.textContent = s;
  note.className = isError ? "error" : "";
}

function showStats(chars, ms, reason) {
  if (chars == null) return;
  const rate = ms > 0 ? (chars / (ms / 1000)).toFixed(1) : "–";
  stats.textContent = `${chars} characters · ${(ms / 1000).toFixed(2)} s · ${rate} characters/s` +
    (reason ? ` · ended at ${reason}` : "");
  document.body.dataset.charsPerSecond = rate;
}

function setRunning(on) {
  writeButton.disabled = on;
  stopButton.disabled = !on;
  document.body.dataset.state = on ? "writing" : "done";
}

worker.onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case "ready":
      $("model").textContent = `Model: ${m.info}; blob ${(m.blobBytes / 1e6).toFixed(2)} MB, ` +
        `engine ${(m.wasmBytes / 1024).toFixed(0)} KiB of WebAssembly.`;
      // A model trained on titles starts from a title; a pretrained one continues text.
      if (!new URLSearchParams(location.search).has("mode")) $("mode").value = m.takesTitles ? "title" : "text";
      showMode();
      setNote("Ready. Give a title and press Write.");
      writeButton.disabled = false;
      document.body.dataset.state = "ready";
      if (new URLSearchParams(location.search).has("write")) form.requestSubmit();
      break;
    case "start": {
      poem.textContent = "";
      const t = document.createElement("span");
      t.className = m.asTitle ? "title" : "opening";
      t.textContent = m.prompt;
      const body = document.createElement("span");
      body.className = "body";
      text = document.createTextNode("");
      body.append(text);
      poem.append(t, body);
      setNote(m.converted.length
        ? `Simplified → traditional (the poems are in traditional Chinese): ${m.converted.join(" ")}`
        : "Writing…");
      convertedNote = m.converted.length ? note.textContent : "";
      break;
    }
    case "char":
      text.appendData(m.c);
      showStats(m.chars, m.ms);
      break;
    case "done":
      showStats(m.chars, m.ms, m.reason);
      setRunning(false);
      if (m.reason === "stopped") setNote("Stopped.");
      else if (convertedNote) setNote(convertedNote);
      else setNote("Done. The same title, seed and temperature write the same poem.");
      break;
    case "error":
      setNote(m.message, true);
      setRunning(false);
      document.body.dataset.state = "error";
      break;
  }
};

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const seed = Number.parseInt($("seed").value, 10);
  const temperature = Number.parseFloat($("temperature").value);
  if (!Number.isSafeInteger(seed) || seed < 0) return setNote("The seed is a whole number ≥ 0.", true);
  if (!(temperature >= 0 && temperature <= 2)) return setNote("The temperature is between 0 and 2.", true);
  stats.textContent = "";
  setRunning(true);
  // ?max=N&nostop (for measurements): N characters, not ending at the poem's blank line.
  const q = new URLSearchParams(location.search);
  const maxLen = Number.parseInt(q.get("max") || "256", 10);
  worker.postMessage({
    type: "write", title: $("title").value.trim(), asTitle: $("mode").value === "title",
    seed, temperature, maxLen, stopAtBlankLine: !q.has("nostop"),
  });
});

stopButton.addEventListener("click", () => worker.postMessage({ type: "stop" }));
function showMode() {
  $("title-label").textContent = $("mode").value === "title" ? "Title" : "First characters";
}
$("mode").addEventListener("change", showMode);
$("dice").addEventListener("click", () => {
  $("seed").value = String(Math.floor(Math.random() * 1e6));
});

// Query parameters fill the form: ?title=…&mode=title|text&seed=…&temperature=…, and &write
// presses Write once the model is loaded.
for (const [k, v] of new URLSearchParams(location.search)) {
  if (["title", "mode", "seed", "temperature"].includes(k) && v) $(k).value = v;
}
