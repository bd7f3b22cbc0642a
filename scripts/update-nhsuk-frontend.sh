#!/usr/bin/env bash
# Vendor the compiled NHS.UK frontend (CSS, JS, images) into the web app's static files, so a
# fresh clone needs no npm. Run it when nhsuk-frontend-jinja (pyproject.toml) moves to a version
# that targets a newer NHS.UK frontend (see that package's compatibility table), then commit.
#
#   scripts/update-nhsuk-frontend.sh [VERSION]     (default: the version in VERSION beside the files)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=src/optout/web/static/nhsuk
VERSION="${1:-$(cat "$DEST/VERSION" 2>/dev/null || echo 10.6.1)}"
command -v npm >/dev/null || { echo "npm is needed to update the vendored NHS.UK frontend" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
( cd "$TMP" && npm pack --silent "nhsuk-frontend@${VERSION}" >/dev/null && tar xzf nhsuk-frontend-*.tgz )
PKG="$TMP/package"
test -f "$PKG/dist/nhsuk/nhsuk-frontend.min.css" || { echo "unexpected package layout" >&2; exit 1; }
test -s "$PKG/dist/nhsuk/nhsuk-frontend.min.js" || { echo "unexpected package layout" >&2; exit 1; }
got="$(node -p "require('$PKG/package.json').version")"
licence="$(node -p "require('$PKG/package.json').license")"
test "$licence" = "MIT" || { echo "nhsuk-frontend's licence is now $licence: review before vendoring" >&2; exit 1; }

rm -rf "$DEST"
mkdir -p "$DEST"
cp "$PKG/dist/nhsuk/nhsuk-frontend.min.css" "$DEST/"
cp "$PKG/dist/nhsuk/nhsuk-frontend.min.js" "$DEST/"
cp -R "$PKG/dist/nhsuk/assets" "$DEST/assets"
# the CSS and JS name their source maps, which we do not ship (the comment only: a minified
# file is one line)
sed -i -E 's#/\*\# sourceMappingURL=[^*]*\*/##' "$DEST/nhsuk-frontend.min.css"
sed -i -E 's#//\# sourceMappingURL=[^ ]*$##' "$DEST/nhsuk-frontend.min.js"
# the Frutiger web font is licensed for NHS.UK's own sites and served from assets.nhs.uk, which
# the Content-Security-Policy (font-src 'self') blocks: drop the @font-face rules (Arial is the
# design system's fallback) so no page asks a third party for anything
sed -i -E 's#@font-face\{[^}]*\}##g' "$DEST/nhsuk-frontend.min.css"
# the CSS points at /assets/...; the app serves them under /static/nhsuk/assets/
sed -i 's#url(/assets/#url(/static/nhsuk/assets/#g' "$DEST/nhsuk-frontend.min.css"
echo "$got" > "$DEST/VERSION"
cat > "$DEST/LICENCE" <<LIC
NHS.UK frontend ${got} (npm package nhsuk-frontend), https://github.com/nhsuk/nhsuk-frontend
Vendored by scripts/update-nhsuk-frontend.sh: dist/nhsuk/nhsuk-frontend.min.css,
dist/nhsuk/nhsuk-frontend.min.js and dist/nhsuk/assets/.

The package declares the licence "${licence}". Its README: "The codebase is released under the MIT
Licence, unless stated otherwise. ... The documentation is © NHS England and available under the
terms of the Open Government 3.0 licence."

The MIT License (MIT)

Copyright (c) NHS England

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
LIC
for f in "$DEST/nhsuk-frontend.min.css" "$DEST/nhsuk-frontend.min.js"; do
  test "$(wc -c < "$f")" -gt 10000 || { echo "$f came out (nearly) empty" >&2; exit 1; }
done
grep -q 'initAll' "$DEST/nhsuk-frontend.min.js" || { echo "nhsuk-frontend.min.js has no initAll" >&2; exit 1; }
echo "vendored nhsuk-frontend ${got} into ${DEST}"
