// Verifies one captured errand webhook delivery with the `standardwebhooks` npm package.
// Input (a JSON file named by argv[2], or stdin): { "secrets": ["whsec_..."], "headers": {...}, "body": "..." }.
// Every secret must verify the delivery on its own. Prints {"ok": true, "type": ...} and exits 0,
// or prints the failure and exits 1.
"use strict";

const fs = require("fs");
const { Webhook } = require("standardwebhooks");

function readInput() {
  const source = process.argv[2] ? fs.readFileSync(process.argv[2], "utf8") : fs.readFileSync(0, "utf8");
  return JSON.parse(source);
}

function main() {
  const { secrets, headers, body } = readInput();
  if (!Array.isArray(secrets) || secrets.length === 0) {
    throw new Error("no secrets given");
  }
  let payload = null;
  for (const secret of secrets) {
    payload = new Webhook(secret).verify(body, headers);
  }
  process.stdout.write(JSON.stringify({ ok: true, verifiedWith: secrets.length, type: payload.type }) + "\n");
}

try {
  main();
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message ? err.message : err) }) + "\n");
  process.exit(1);
}
