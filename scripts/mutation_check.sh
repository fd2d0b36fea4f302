#!/usr/bin/env bash
# Mutation check: plants each bug of scripts/mutations.txt, one at a time, in a scratch copy of
# the source tree, rebuilds incrementally, runs the tests named for it and reports whether they
# caught it. Exits non-zero if any mutation survives, is stale (its old text no longer occurs
# exactly once) or is broken (does not compile, or its tests regex selects nothing). Each
# mutation's test output is kept in $MUTATION_DIR/logs/. See docs/testing.md.
#   scripts/mutation_check.sh [NAME...]      (default: every mutation in the list)
#   scripts/mutation_check.sh --check-list   (only whether each old text still occurs once)
# Environment: MUTATIONS (the list), MUTATION_DIR (scratch, default /tmp/mamba-mutation-$USER),
# MUTATION_JOBS (build and test parallelism, default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
list=${MUTATIONS:-$root/scripts/mutations.txt}
# One scratch folder per user and checkout, so that two checkouts never share one.
work=${MUTATION_DIR:-/tmp/mamba-mutation-${USER:-$(id -un)}-$(printf '%s' "$root" | cksum | cut -d" " -f1)}
jobs=${MUTATION_JOBS:-$(nproc)}
src=$work/src
build=$work/build
start=$SECONDS

# ---- the list: parallel arrays, one entry per block ----
names=() files=() tests=() olds=() news=()
flush() {
  if [ -n "${name:-}" ]; then
    if [ -z "${file:-}" ] || [ -z "${test_re:-}" ] || [ -z "${old+x}" ] || [ -z "${new+x}" ]; then
      echo "mutation_check: $list: block '$name' needs file, tests, old and new" >&2
      exit 2
    fi
    for n in "${names[@]}"; do
      [ "$n" != "$name" ] || { echo "mutation_check: $list: two blocks named '$name'" >&2; exit 2; }
    done
    names+=("$name") files+=("$file") tests+=("$test_re") olds+=("$old") news+=("$new")
  fi
  unset name file test_re old new
}
while IFS= read -r line || [ -n "$line" ]; do
  case $line in
    '#'*) ;;
    '') flush ;;
    'name: '*) name=${line#name: } ;;
    'file: '*) file=${line#file: } ;;
    'tests: '*) test_re=${line#tests: } ;;
    'old: '*) old=${line#old: } ;;
    'new:'*) new=${line#new:} new=${new# } ;;
    *) echo "mutation_check: $list: cannot read line: $line" >&2; exit 2 ;;
  esac
done <"$list"
flush

# Fails, printing why, unless the text $2 occurs exactly once in the file $1.
stale_reason() {
  if [ ! -f "$1" ]; then
    echo "the file does not exist"
    return 1
  fi
  local rest count=0
  rest=$(cat "$1"; printf x)
  while [[ $rest == *"$2"* ]]; do
    count=$((count + 1))
    rest=${rest#*"$2"}
  done
  if [ "$count" -ne 1 ]; then
    echo "the old text occurs $count times"
    return 1
  fi
}

# --check-list: only whether every mutation still applies to this tree (seconds, no build).
if [ "${1:-}" = --check-list ]; then
  bad=0
  for i in "${!names[@]}"; do
    if ! why=$(stale_reason "${files[$i]}" "${olds[$i]}"); then
      printf 'stale     %-44s %s in %s\n' "${names[$i]}" "$why" "${files[$i]}"
      bad=1
    fi
  done
  [ "$bad" = 0 ] && echo "mutation_check: all ${#names[@]} mutations apply"
  exit "$bad"
fi

selected=()
if [ $# -eq 0 ]; then
  selected=("${!names[@]}")
else
  for want in "$@"; do
    found=
    for i in "${!names[@]}"; do [ "${names[$i]}" = "$want" ] && selected+=("$i") && found=1; done
    [ -n "$found" ] || { echo "mutation_check: no mutation named '$want' in $list" >&2; exit 2; }
  done
fi

# ---- scratch copy and its build ----
# Tracked and untracked-but-not-ignored files, with their modification times, so that a rerun
# rebuilds only what changed since.
mkdir -p "$work"
rm -rf "$src"
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # (files deleted but not yet committed are listed too; tar skips them)
  git ls-files -co --exclude-standard -z |
    tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$src"
else
  tar --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$src"
fi
# A run stopped while a mutation was in place left its object compiled from the mutated file, and
# the restored source is older than that object: touch it so that it compiles again.
if [ -f "$work/mutating" ]; then
  touch "$src/$(cat "$work/mutating")"
  rm "$work/mutating"
fi
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
echo "mutation_check: building the scratch copy in $build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMAMBA_CUDA=OFF "${launcher[@]}" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 2; }
cmake --build "$build" -j"$jobs" --target mamba_tests >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log"; exit 2; }
echo "mutation_check: base build ready after $((SECONDS - start)) s"

# $1: ctest regex, $2: log file. 0: every selected test passed, 1: one failed, 2: none matched.
run_tests() {
  if (cd "$build" && ctest -R "$1" -j"$jobs" --timeout 600 --stop-on-failure --output-on-failure \
    --no-tests=error) >"$2" 2>&1; then
    return 0
  fi
  if grep -q "No tests were found" "$2"; then return 2; fi
  return 1
}

# The tests must pass before anything is planted, or every mutation would look caught.
all_re=$(for i in "${selected[@]}"; do printf '%s\n' "${tests[$i]}"; done | sort -u | paste -sd'|')
mkdir -p "$work/logs"
if ! run_tests "$all_re" "$work/logs/unmutated.log"; then
  tail -30 "$work/logs/unmutated.log"
  echo "mutation_check: the selected tests fail without any mutation; fix them first" >&2
  exit 2
fi
echo "mutation_check: unmutated tests pass after $((SECONDS - start)) s"

# ---- plant, build, test, restore ----
# The object compiled from the mutated file is saved first and put back afterwards (newer than
# the restored source), so undoing a mutation costs a relink, not a recompile.
killed=0 survived=() stale=() broken=()
for i in "${selected[@]}"; do
  name=${names[$i]} rel=${files[$i]} old=${olds[$i]} new=${news[$i]}
  target=$src/$rel
  t0=$SECONDS
  if ! why=$(stale_reason "$target" "$old"); then
    stale+=("$name")
    printf 'stale     %-44s %s in %s\n' "$name" "$why" "$rel"
    continue
  fi
  object=$(find "$build/CMakeFiles" -path "*.dir/$rel.o" | head -1)
  cp -p "$target" "$work/original"
  [ -n "$object" ] && cp -p "$object" "$work/original.o"
  printf '%s' "$rel" >"$work/mutating"
  text=$(cat "$target"; printf x)
  text=${text%x}
  printf '%s' "${text/"$old"/"$new"}" >"$target"
  if ! cmake --build "$build" -j"$jobs" --target mamba_tests >"$work/build.log" 2>&1; then
    broken+=("$name")
    cp "$work/build.log" "$work/logs/$name.build.log"
    printf 'BROKEN    %-44s does not compile (see %s)\n' "$name" "$work/logs/$name.build.log"
    cp -p "$work/original" "$target"
    touch "$target"
    rm "$work/mutating"
    continue
  fi
  outcome=0
  run_tests "${tests[$i]}" "$work/logs/$name.log" || outcome=$?
  case $outcome in
    0)
      survived+=("$name")
      printf 'SURVIVED  %-44s %s: %s  ->  %s\n' "$name" "$rel" "$old" "$new"
      ;;
    1)
      killed=$((killed + 1))
      printf 'killed    %-44s (%d s)\n' "$name" $((SECONDS - t0))
      ;;
    *)
      broken+=("$name")
      printf 'BROKEN    %-44s its tests regex matches no test\n' "$name"
      ;;
  esac
  cp -p "$work/original" "$target"
  if [ -n "$object" ]; then
    cp "$work/original.o" "$object"
  else
    touch "$target"  # a header: whatever includes it recompiles
  fi
  rm "$work/mutating"
done

# Leave the scratch build matching the source, so that a rerun starts from a clean state.
cmake --build "$build" -j"$jobs" --target mamba_tests >"$work/build.log" 2>&1 || true
echo "mutation_check: ${#selected[@]} mutations: $killed killed, ${#survived[@]} survived," \
  "${#stale[@]} stale, ${#broken[@]} broken ($((SECONDS - start)) s)"
for n in "${survived[@]}"; do echo "  survived: $n"; done
for n in "${stale[@]}"; do echo "  stale: $n"; done
for n in "${broken[@]}"; do echo "  broken (does not compile or selects no test): $n"; done
[ ${#survived[@]} -eq 0 ] && [ ${#stale[@]} -eq 0 ] && [ ${#broken[@]} -eq 0 ]
