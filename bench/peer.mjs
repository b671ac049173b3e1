#!/usr/bin/env node
// The peer: run one PHP file through WordPress Playground's php-wasm for Node
// (npm @php-wasm/node, pinned in package.json), as bench/peer.py does for its table.
//
//     node bench/peer.mjs FILE.php [PHP_VERSION]
//
// The script's output goes to stdout (its errors to stderr); then one last stderr line,
//     kiln-peer {"load": S, "run": S, "exit": N, "php": "8.2.x", "package": "3.1.x", "mode": "asyncify"}
// gives the runtime load time (loadNodeRuntime + new PHP) and the script's own run time
// separately, in seconds of wall clock, and which of its builds php-wasm picked (JSPI when this
// Node has WebAssembly.Suspending, else Asyncify). The file is copied into php-wasm's in-memory file
// system (as /bench/NAME) and run in file mode (php_execute_script), so nothing from the
// host is mounted.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { loadNodeRuntime } from '@php-wasm/node';
import { PHP } from '@php-wasm/universal';

const [file, version = '8.2'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/peer.mjs FILE.php [PHP_VERSION]');
  process.exit(2);
}
const code = readFileSync(file);
const pkg = createRequire(import.meta.url)('@php-wasm/node/package.json').version;

let started = performance.now();
const php = new PHP(await loadNodeRuntime(version, { emscriptenOptions: { processId: 1 } }));
const load = (performance.now() - started) / 1000;

const guest = `/bench/${basename(file)}`;
php.mkdir('/bench');
php.writeFile(guest, code);
started = performance.now();
let response;
try {
  response = await php.run({ scriptPath: guest });
} catch (error) {
  if (!error.response) throw error; // PHPExecutionFailureError: PHP exited non-zero
  response = error.response;
}
const run = (performance.now() - started) / 1000;

process.stdout.write(response.bytes);
if (response.errors) process.stderr.write(response.errors);
const phpVersion = (await php.run({ code: '<?php echo PHP_VERSION;' })).text;
process.stderr.write(`\nkiln-peer ${JSON.stringify({ load, run, exit: response.exitCode, php: phpVersion, package: pkg, mode: typeof WebAssembly.Suspending === 'function' ? 'jspi' : 'asyncify' })}\n`);
process.exit(response.exitCode === 0 ? 0 : 1);
