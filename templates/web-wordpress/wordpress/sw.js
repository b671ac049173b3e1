// WordPress in the browser: this service worker answers every request under its scope
// (.../wordpress/) with the build's php-cgi.wasm, unchanged, over the WordPress docroot held in
// memory: static files from the docroot, PHP through CGI/1.1 environment variables as the
// server passes them (kiln/server/app.py). A fresh instance per request, as on the server.
//
// What a service worker cannot do, it emulates: the browser neither shows it the Cookie header
// nor lets it set cookies, so it keeps WordPress's cookies itself; and it may be stopped at any
// idle moment, so the SQLite database and those cookies are saved in IndexedDB after every
// request and restored when it starts.
import { Root } from "../fs.js";
import { ConsoleStdout, Directory, File, OpenFile, WASI } from "../shim/index.js";

const SCOPE = new URL(self.registration.scope).pathname; // ends with "/"
// The docroot sits in the guest's file system at the same path as in the URL, so WordPress
// finds itself where the browser sees it (siteurl, REQUEST_URI, SCRIPT_NAME agree).
const DOCROOT = SCOPE.slice(0, -1);
const DATABASE = ["wp-content", "database", ".ht.sqlite"];
const INI = [
  "display_errors = Off", "log_errors = On", "memory_limit = 256M", "cgi.fix_pathinfo = 1",
  "upload_tmp_dir = /tmp", "sys_temp_dir = /tmp", "session.save_path = /tmp", "",
].join("\n");
const TYPES = {
  css: "text/css", js: "text/javascript", json: "application/json", html: "text/html", txt: "text/plain",
  xml: "application/xml", svg: "image/svg+xml", png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg",
  gif: "image/gif", webp: "image/webp", ico: "image/x-icon", woff: "font/woff", woff2: "font/woff2",
};
const encoder = new TextEncoder();

// The docroot archive (kiln/web.py packs it): ustar, directories and regular files only.
function untar(bytes) {
  const root = new Map();
  const field = (at, length) => {
    const raw = bytes.subarray(at, at + length);
    const end = raw.indexOf(0);
    return new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end));
  };
  const folder = (parts) => {
    let contents = root;
    for (const part of parts) {
      if (!contents.has(part)) contents.set(part, new Directory(new Map()));
      contents = contents.get(part).contents;
    }
    return contents;
  };
  for (let at = 0; at + 512 <= bytes.length;) {
    const name = field(at, 100);
    if (!name) break; // the two zero blocks at the end
    const size = parseInt(field(at + 124, 12).trim() || "0", 8);
    const prefix = field(at + 345, 155);
    const parts = `${prefix ? `${prefix}/` : ""}${name}`.split("/").filter((p) => p && p !== ".");
    const type = String.fromCharCode(bytes[at + 156]);
    if (type === "5") {
      folder(parts);
    } else if (type === "0" || type === "\0") {
      const leaf = parts.pop();
      folder(parts).set(leaf, new File(bytes.slice(at + 512, at + 512 + size)));
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return root;
}

// The entry at `parts` under the Directory `entry` (the shim's Directory sets its children's
// parent when made, so a walk must not wrap maps in new ones).
function lookup(entry, parts) {
  for (const part of parts) {
    if (!(entry instanceof Directory)) return null;
    entry = entry.contents.get(part);
    if (!entry) return null;
  }
  return entry;
}

// --- IndexedDB: one object store of saved values ---------------------------------------------
function store(mode, work) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("kiln-wordpress", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("saved");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction("saved", mode);
      const request = work(tx.objectStore("saved"));
      tx.oncomplete = () => { open.result.close(); resolve(request.result); };
      tx.onerror = () => reject(tx.error);
    };
  });
}
const restore = (key) => store("readonly", (saved) => saved.get(key));
const save = (key, value) => store("readwrite", (saved) => saved.put(value, key));

let site = null;
function start() {
  site ??= (async () => {
    const started = performance.now();
    const download = async (name) => {
      const response = await fetch(new URL(`../${name}`, self.location));
      if (!response.ok) throw new Error(`${name}: HTTP ${response.status} ${response.statusText}`);
      return response;
    };
    const [wasm, archive] = await Promise.all([
      download("php-cgi.wasm").then((r) => r.arrayBuffer()),
      download("wordpress-docroot.tar.gz")
        .then((r) => new Response(r.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer()),
    ]);
    const module = await WebAssembly.compile(wasm);
    const docroot = new Directory(untar(new Uint8Array(archive)));
    const database = await restore("database");
    if (database) {
      lookup(docroot, DATABASE.slice(0, -1)).contents.set(DATABASE.at(-1), new File(database));
    }
    const cookies = new Map(Object.entries((await restore("cookies")) || {}));
    // The guest's root: the docroot at DOCROOT, an empty /tmp, the php.ini (found through PHPRC).
    const root = new Map([
      ["tmp", new Directory(new Map())],
      [".kiln", new Directory(new Map([["php.ini", new File(encoder.encode(INI))]]))],
    ]);
    const parents = DOCROOT.split("/").filter(Boolean);
    const leaf = parents.pop();
    let contents = root;
    for (const part of parents) {
      contents.set(part, new Directory(new Map()));
      contents = contents.get(part).contents;
    }
    contents.set(leaf, docroot);
    console.log(`kiln: WordPress ready in ${(performance.now() - started).toFixed(0)} ms`);
    return { module, docroot, root, cookies };
  })();
  site.catch(() => { site = null; }); // a failed start is retried by the next request
  return site;
}

self.addEventListener("install", (event) => event.waitUntil(start().then(() => self.skipWaiting())));
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function keepCookie(cookies, line) {
  const [pair, ...attributes] = line.split(";");
  const eq = pair.indexOf("=");
  if (eq < 1) return;
  const name = pair.slice(0, eq).trim();
  const value = pair.slice(eq + 1).trim();
  const expired = attributes.some((attribute) => {
    const [key, v = ""] = attribute.split("=").map((s) => s.trim());
    return (key.toLowerCase() === "max-age" && Number(v) <= 0)
      || (key.toLowerCase() === "expires" && Date.parse(v) < Date.now());
  });
  if (expired) cookies.delete(name); else cookies.set(name, value);
}

// php-cgi's output as an HTTP response (RFC 3875 section 6, as kiln/cgi.py reads it).
function cgiResponse(output, cookies) {
  let end = -1;
  let skip = 0;
  for (let i = 0; i + 1 < output.length && end < 0; i++) {
    if (output[i] === 10 && output[i + 1] === 10) [end, skip] = [i, 2];
    else if (output[i] === 13 && output[i + 1] === 10 && output[i + 2] === 13 && output[i + 3] === 10) [end, skip] = [i, 4];
  }
  if (end < 0) return new Response("php-cgi.wasm wrote no CGI header block", { status: 502 });
  const headers = new Headers();
  let status = 200;
  let redirect = false;
  for (const line of new TextDecoder("latin1").decode(output.subarray(0, end)).split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon < 1) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === "status") {
      status = parseInt(value, 10) || 502;
    } else if (lower === "set-cookie") {
      keepCookie(cookies, value);
    } else {
      redirect ||= lower === "location";
      headers.append(name, value);
    }
  }
  if (redirect && status === 200) status = 302;
  const empty = [204, 205, 304].includes(status) || (status >= 300 && status < 400);
  return new Response(empty ? null : output.slice(end + skip), { status, headers });
}

async function php(request, url, script) {
  const { module, root, docroot, cookies } = await start();
  const body = new Uint8Array(await request.arrayBuffer());
  const env = {
    GATEWAY_INTERFACE: "CGI/1.1", SERVER_SOFTWARE: "Kiln service worker", SERVER_PROTOCOL: "HTTP/1.1",
    SERVER_NAME: url.hostname, SERVER_PORT: url.port || (url.protocol === "https:" ? "443" : "80"),
    REQUEST_METHOD: request.method, REQUEST_URI: url.pathname + url.search, REQUEST_SCHEME: url.protocol.slice(0, -1),
    QUERY_STRING: url.search.slice(1), DOCUMENT_ROOT: "/", SCRIPT_NAME: `${DOCROOT}/${script}`,
    SCRIPT_FILENAME: `${DOCROOT}/${script}`, REMOTE_ADDR: "127.0.0.1", REDIRECT_STATUS: "200",
    PHPRC: "/.kiln", TMPDIR: "/tmp", WORDPRESS_HOME: url.origin + DOCROOT,
  };
  if (url.protocol === "https:") env.HTTPS = "on";
  if (request.method !== "GET" && request.method !== "HEAD") env.CONTENT_LENGTH = String(body.length);
  for (const [name, value] of request.headers) {
    if (name === "content-type") env.CONTENT_TYPE = value;
    else if (name !== "content-length" && !name.includes("_")) env[`HTTP_${name.toUpperCase().replaceAll("-", "_")}`] = value;
  }
  env.HTTP_HOST = url.host;
  if (cookies.size) env.HTTP_COOKIE = Array.from(cookies, ([name, value]) => `${name}=${value}`).join("; ");
  const chunks = [];
  let errors = "";
  const wasi = new WASI(["php-cgi"], Object.entries(env).map(([key, value]) => `${key}=${value}`), [
    new OpenFile(new File(body)),
    new ConsoleStdout((data) => chunks.push(data.slice())),
    new ConsoleStdout((data) => { errors += new TextDecoder().decode(data); }),
    new Root("/", root),
  ], { debug: false });
  const started = performance.now();
  try {
    wasi.start(await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport }));
  } catch (error) {
    return new Response(`php-cgi.wasm trapped: ${error}\n${errors}`, { status: 500 });
  }
  if (errors) console.warn(`kiln: php-cgi ${request.method} ${url.pathname}: ${errors}`);
  const output = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  chunks.reduce((at, chunk) => { output.set(chunk, at); return at + chunk.length; }, 0);
  const response = cgiResponse(output, cookies);
  console.log(`kiln: ${request.method} ${url.pathname}${url.search} ${response.status} `
    + `${(performance.now() - started).toFixed(0)} ms`);
  const database = lookup(docroot, DATABASE);
  if (database) await save("database", database.data.slice());
  await save("cookies", Object.fromEntries(cookies));
  return response;
}

async function answer(request) {
  const url = new URL(request.url);
  const path = decodeURIComponent(url.pathname.slice(SCOPE.length));
  const { docroot } = await start();
  const parts = path.split("/").filter(Boolean);
  const entry = lookup(docroot, parts);
  if (entry instanceof Directory) {
    if (path && !path.endsWith("/")) return Response.redirect(`${url.pathname}/${url.search}`, 301);
    if (entry.contents.has("index.php")) return php(request, url, [...parts, "index.php"].join("/"));
  } else if (entry && path.endsWith(".php")) {
    return php(request, url, parts.join("/"));
  } else if (entry) {
    const type = TYPES[path.split(".").pop().toLowerCase()] || "application/octet-stream";
    return new Response(entry.data, { headers: { "Content-Type": type } });
  }
  // Pretty permalinks and everything else: WordPress's front controller decides.
  return php(request, url, "index.php");
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(SCOPE)
      || url.pathname === self.location.pathname) {
    return; // not WordPress's: the network answers
  }
  event.respondWith(answer(event.request).catch((error) =>
    new Response(`Kiln: ${error.stack || error}`, { status: 500, headers: { "Content-Type": "text/plain" } })));
});
