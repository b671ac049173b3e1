// Runs PHP for the playground page, in a Web Worker so the page stays responsive while a script
// runs. The module is the build's php.wasm, byte for byte: fetched once, hashed (the page compares
// the hash with the server's module), compiled once; each run gets a fresh instance, a fresh
// in-memory file system and fresh stdio, as each request gets on the server.
import { Root } from "./fs.js";
import { ConsoleStdout, Directory, File, OpenFile, WASI } from "./shim/index.js";

// Output is posted as it is written, but coalesced: a loop of small echoes must not become one
// message per write. The first write always goes at once (the page measures time to it).
const FLUSH_MS = 20;
const encoder = new TextEncoder();

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

const loaded = (async () => {
  const started = performance.now();
  const response = await fetch("php.wasm");
  if (!response.ok) {
    throw new Error(`php.wasm: HTTP ${response.status} ${response.statusText}`);
  }
  const bytes = await response.arrayBuffer();
  const fetched = performance.now();
  const [digest, module] = await Promise.all([
    crypto.subtle.digest("SHA-256", bytes),
    WebAssembly.compile(bytes),
  ]);
  const compiled = performance.now();
  // The worker's own downloads are in its own timeline, not the page's: the page adds them up.
  const resources = performance.getEntriesByType("resource").map((entry) => ({
    name: entry.name, transferSize: entry.transferSize, encodedBodySize: entry.encodedBodySize,
  }));
  postMessage({
    type: "ready", sha256: hex(digest), bytes: bytes.byteLength, resources,
    fetchMs: fetched - started, compileMs: compiled - fetched,
  });
  return module;
})();
loaded.catch((error) => postMessage({ type: "failed", message: String(error) }));

class Stream {
  constructor(id, name) {
    this.id = id;
    this.name = name;
    this.decoder = new TextDecoder("utf-8");
    this.pending = "";
    this.posted = 0;
    this.bytes = 0;
  }

  write(data) {
    this.bytes += data.byteLength;
    this.pending += this.decoder.decode(data, { stream: true });
    const now = performance.now();
    if (this.posted === 0 || now - this.posted >= FLUSH_MS) {
      this.flush(now);
    }
  }

  flush(now = performance.now()) {
    this.pending += this.decoder.decode();
    if (this.pending) {
      postMessage({ type: "output", id: this.id, stream: this.name, text: this.pending });
      this.pending = "";
    }
    this.posted = now;
  }
}

// Code that opens with a PHP tag is a script file (/playground.php); anything else is what
// `php -r` takes, so `echo PHP_VERSION;` works as typed.
function command(code, root) {
  if (/^\s*<\?/.test(code)) {
    root.set("playground.php", new File(encoder.encode(code)));
    return ["php", "/playground.php"];
  }
  return ["php", "-r", code];
}

async function run({ id, code, stdin = "" }) {
  const module = await loaded;
  const started = performance.now();
  const stdout = new Stream(id, "stdout");
  const stderr = new Stream(id, "stderr");
  const root = new Map([["tmp", new Directory(new Map())]]);
  const argv = command(code, root);
  const wasi = new WASI(argv, [], [
    new OpenFile(new File(encoder.encode(stdin))),
    new ConsoleStdout((data) => stdout.write(data)),
    new ConsoleStdout((data) => stderr.write(data)),
    new Root("/", root),
  ], { debug: false }); // the shim logs every call to the console unless told not to
  let exit = null;
  let trap = null;
  try {
    const instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport });
    exit = wasi.start(instance);
  } catch (error) {
    // A trap (unreachable, out of bounds, stack exhaustion) or a call the shim refuses.
    trap = String(error);
  }
  stdout.flush();
  stderr.flush();
  postMessage({ type: "exit", id, exit, trap, ms: performance.now() - started, bytes: stdout.bytes });
}

// One run at a time, in order: a run blocks this thread until PHP exits.
let queue = Promise.resolve();
onmessage = ({ data }) => {
  queue = queue.then(() => run(data)).catch((error) => {
    postMessage({ type: "exit", id: data.id, exit: null, trap: String(error), ms: 0, bytes: 0 });
  });
};
