#!/usr/bin/env bash
# Writes tests/data/tokenizer/gpt3_encoder_ids.json: GPT-2 token ids of the texts below, made by
# the npm package gpt-3-encoder@1.1.4 (its own JavaScript BPE, not this project's) under node.
# The tokenizer tests compare both of the project's GPT-2 tokenizers with these ids. Needs node
# and npm with registry access; run it again only to add texts.
#   scripts/make_tokenizer_ids.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/tests/data/tokenizer/gpt3_encoder_ids.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-save gpt-3-encoder@1.1.4 >/dev/null)
NODE_PATH="$work/node_modules" node - "$out" <<'JS'
const { encode } = require('gpt-3-encoder');
const fs = require('fs');
const version = require('gpt-3-encoder/package.json').version;
// Runs of one repeated character (odd and even lengths: BPE's left-to-right tie-break between
// equal-rank merges shows there), digits, whitespace, and mixed text. No runs of commas: this
// encoder keys its merge table by "a,b", which is ambiguous for tokens that contain commas.
const runs = [];
for (const c of ['a', 'e', 'z', 'A', '!', '-', '=', '.', '0', '1', '9', '*', '_', '#', 'x']) {
  for (const n of [2, 3, 4, 5, 6, 7, 8, 9, 11, 16, 17, 33]) runs.push(c.repeat(n));
}
const texts = runs.concat([
  ' ' + 'a'.repeat(7), 'aaa bbb ccc ddddd eeeeeee', 'hmmmmm ahhhhh ohhhhhh nooooo yesssss',
  '1', '12', '123', '1234', '12345', '1234567890', '3.14159265358979', '2024-01-31 23:59:59',
  'version 10.0.19045', '1000000 and 999999999 and 0.000001', '+1 (555) 010-9999',
  ' ', '  ', '   ', '    ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', ' \n ', 'a \n b',
  'trailing   ', '   leading', 'tabs\tand\r\nCRLF\n\n\nthree newlines',
  'x' + ' '.repeat(7) + 'y', 'x' + '\n'.repeat(5) + 'y', ' '.repeat(300) + 'x' + '\n'.repeat(300),
  'a'.repeat(1001), 'a'.repeat(1000), 'ab'.repeat(300),
  'Hello, world!\n', "It's, we'll, they've, I'd, you're, he's, don't, I'M",
  'Ünïcödé façade naïve coöperate 日本語のテキスト 한국어 العربية עברית',
  'emoji 👩‍👩‍👧‍👦 🇺🇳 🎉🎉🎉 and symbols ∀x∈ℝ: x² ≥ 0',
  'mixed \u00a0nbsp\u2003em-space\u3000ideographic',
  'def f(x):\n    return x ** 2  # square\n',
  'The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!!!',
]);
const cases = texts.map(text => ({ text, ids: encode(text) }));
const doc = {
  produced_by: `npm gpt-3-encoder@${version} encode(), node ${process.version}, ` +
      'scripts/make_tokenizer_ids.sh',
  cases,
};
fs.writeFileSync(process.argv[2], JSON.stringify(doc, null, 0).replace(/\},\{/g, '},\n{') + '\n');
console.log(`${cases.length} cases -> ${process.argv[2]}`);
JS
