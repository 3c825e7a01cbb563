#!/usr/bin/env bash
# Vendor the chat page's browser libraries into static/vendor/ from the npm registry, at the
# versions pinned in package-lock.json. The copied files are committed, so running chatsite
# needs no npm; run this only to upgrade (edit package.json, `npm install --package-lock-only`,
# then this script) and commit static/vendor/ with the lock.
#
#   marked        GFM Markdown → HTML           static/vendor/marked/marked.esm.js
#   dompurify     HTML sanitizer                static/vendor/dompurify/purify.es.js
#   highlight.js  common-languages browser build static/vendor/highlight/highlight.min.js
#                 (+ GitHub's light and dark    static/vendor/highlight/github.min.css,
#                 themes)                       static/vendor/highlight/github-dark.min.css
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$root/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Install in a scratch directory: no node_modules/ in the repository.
cp "$root/package.json" "$root/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
modules="$work/node_modules"

# Copy one file, dropping the source-map comment (the maps are not vendored, and Django's
# manifest storage would fail on a reference to a missing file).
copy() {
  mkdir -p "$(dirname "$2")"
  sed -e '/^\/\/# sourceMappingURL=/d' "$1" >"$2"
}

rm -rf "$vendor/marked" "$vendor/dompurify" "$vendor/highlight"

copy "$modules/marked/lib/marked.esm.js" "$vendor/marked/marked.esm.js"
cp "$modules/marked/LICENSE" "$vendor/marked/LICENSE"

# .mjs renamed .js: served as text/javascript everywhere (module scripts need a JS type).
copy "$modules/dompurify/dist/purify.es.mjs" "$vendor/dompurify/purify.es.js"
cp "$modules/dompurify/LICENSE" "$vendor/dompurify/LICENSE"

copy "$modules/@highlightjs/cdn-assets/es/highlight.min.js" "$vendor/highlight/highlight.min.js"
copy "$modules/@highlightjs/cdn-assets/styles/github.min.css" "$vendor/highlight/github.min.css"
copy "$modules/@highlightjs/cdn-assets/styles/github-dark.min.css" "$vendor/highlight/github-dark.min.css"
cp "$modules/@highlightjs/cdn-assets/LICENSE" "$vendor/highlight/LICENSE"

# Record what was copied, for anyone reading static/vendor/ without the lock at hand.
node -e '
  const lock = require(process.argv[1]);
  const names = ["marked", "dompurify", "@highlightjs/cdn-assets"];
  for (const n of names) console.log(n + "@" + lock.packages["node_modules/" + n].version);
' "$work/package-lock.json" >"$vendor/VERSIONS"
echo "vendored into $vendor:"
cat "$vendor/VERSIONS"
