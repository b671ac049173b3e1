// The playground page: sends code to the worker (worker.js), renders what PHP writes, and shows
// which module runs and what starting it cost. `?run=<url-encoded code>` runs that code on load.
const $ = (id) => document.getElementById(id);
const ABOUT = "echo json_encode(['version' => PHP_VERSION, 'uname' => php_uname()]);";

let worker = null;
let nextId = 1;
let current = null; // the id of the run whose output goes to #output
let firstOutput = null;
let restarted = false;
const runs = new Map(); // id -> {text, done}

function setStatus(text) {
  $("status").textContent = text;
}

function append(stream, text) {
  const node = document.createElement("span");
  node.className = stream;
  node.textContent = text;
  $("output").append(node);
}

function send(code, onExit) {
  const id = nextId++;
  runs.set(id, { text: "", onExit });
  worker.postMessage({ id, code });
  return id;
}

function run(code) {
  $("output").replaceChildren();
  $("exit-status").textContent = "";
  $("exit-status").dataset.exit = "";
  $("run").disabled = true;
  $("stop").disabled = false;
  setStatus("running…");
  current = send(code, (message) => {
    const shown = message.trap ? `trapped: ${message.trap}` : `exit status ${message.exit}`;
    $("exit-status").textContent = `${shown} (${message.ms.toFixed(1)} ms)`;
    $("exit-status").dataset.exit = message.trap ? "trap" : String(message.exit);
    $("run").disabled = false;
    $("stop").disabled = true;
    setStatus("ready");
  });
}

// Everything the page and its worker downloaded: the page's own timeline holds the document and
// the scripts, the worker's holds php.wasm (transferSize counts headers too; a cached file is 0).
function transferred(workerResources) {
  const entries = [...performance.getEntriesByType("navigation"),
    ...performance.getEntriesByType("resource"), ...workerResources];
  const seen = new Map();
  for (const entry of entries) {
    const size = entry.transferSize || entry.encodedBodySize || 0;
    seen.set(entry.name, Math.max(size, seen.get(entry.name) || 0));
  }
  let total = 0;
  for (const size of seen.values()) total += size;
  return { total, files: seen.size };
}

function ready(message) {
  $("sha256").textContent = message.sha256;
  const same = message.sha256 === $("expected-sha256").textContent.trim();
  $("same-module").textContent = same ? "the same module" : "DIFFERENT from the server's module";
  $("same-module").dataset.same = String(same);
  $("compile").textContent = `fetch ${message.fetchMs.toFixed(0)} ms, compile ${message.compileMs.toFixed(0)} ms`
    + ` (php.wasm ${message.bytes} bytes)`;
  const bytes = transferred(message.resources);
  $("bytes-transferred").textContent = `${bytes.total} bytes in ${bytes.files} files`;
  $("metrics").dataset.bytes = String(bytes.total);
  $("metrics").dataset.wasmBytes = String(message.bytes);
  $("metrics").dataset.compileMs = message.compileMs.toFixed(1);
  $("run").disabled = false;
  setStatus("ready");
  if (restarted) return; // after Stop: the page already knows PHP and ran ?run once
  send(ABOUT, (exit) => {
    try {
      const about = JSON.parse(runs.get(exit.id).text);
      $("php-version").textContent = about.version;
      $("php-uname").textContent = about.uname;
    } catch (error) {
      $("php-version").textContent = `could not ask PHP: ${exit.trap || runs.get(exit.id).text}`;
    }
  });
  const code = new URLSearchParams(location.search).get("run");
  if (code !== null) {
    $("code").value = code;
    run(code);
  }
}

function receive({ data: message }) {
  if (message.type === "ready") {
    ready(message);
  } else if (message.type === "failed") {
    setStatus(`cannot start PHP: ${message.message}`);
  } else if (message.type === "output") {
    if (firstOutput === null) {
      // From the start of navigation (performance's time origin) to PHP's first bytes here.
      firstOutput = performance.now();
      $("first-output").textContent = `${firstOutput.toFixed(0)} ms after navigation start`;
      $("metrics").dataset.firstOutputMs = firstOutput.toFixed(1);
    }
    runs.get(message.id).text += message.text;
    if (message.id === current) append(message.stream, message.text);
  } else if (message.type === "exit") {
    const entry = runs.get(message.id);
    entry.done = true;
    entry.onExit(message);
  }
}

function startWorker() {
  worker = new Worker("worker.js", { type: "module" });
  worker.onmessage = receive;
  worker.onerror = (event) => setStatus(`worker error: ${event.message}`);
}

// A script that never ends blocks its worker: Stop throws the worker away and starts another.
function stop() {
  worker.terminate();
  $("exit-status").textContent = "stopped";
  $("exit-status").dataset.exit = "stopped";
  $("run").disabled = true;
  $("stop").disabled = true;
  setStatus("restarting PHP…");
  current = null;
  restarted = true;
  startWorker();
}

$("playground").addEventListener("submit", (event) => {
  event.preventDefault();
  run($("code").value);
});
$("stop").addEventListener("click", stop);
startWorker();
