#!/bin/sh
# Vendors the chat page's browser libraries from npm into api/static/vendor/:
# each package's prebuilt ES module, verbatim, with its licence beside it.
# Usage: scripts/vendor_page_libs.sh [MARKED_VERSION] [DOMPURIFY_VERSION]
# Then update the versions named in the README and run the page's tests.
set -eu
MARKED=${1:-18.3.0}
DOMPURIFY=${2:-3.5.0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR="$ROOT/api/static/vendor"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "marked@$MARKED" "dompurify@$DOMPURIFY" >/dev/null
mkdir marked dompurify
tar xzf "marked-$MARKED.tgz" -C marked
tar xzf "dompurify-$DOMPURIFY.tgz" -C dompurify
rm -rf "$VENDOR/marked" "$VENDOR/dompurify"
mkdir -p "$VENDOR/marked" "$VENDOR/dompurify"
cp marked/package/lib/marked.esm.js marked/package/LICENSE "$VENDOR/marked/"
cp dompurify/package/dist/purify.es.mjs dompurify/package/LICENSE "$VENDOR/dompurify/"
cp dompurify/package/LICENSE-MPL "$VENDOR/dompurify/" 2>/dev/null || true
echo "vendored marked $MARKED and dompurify $DOMPURIFY into $VENDOR"
